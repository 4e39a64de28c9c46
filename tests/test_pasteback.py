"""Paste-back: the user's photo comes back, every face edited in place, the rest untouched."""
import io

import matplotlib.cbook
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from vrfam_rt.cli import main
from vrfam_rt.images import read_provenance
from vrfam_rt.pasteback import face_mask, face_regions, paste_back
from vrfam_rt.suite import default_suite

PHOTO = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
EXAMPLE = default_suite() / "faces" / "example.png"


def edit(*args):
    return CliRunner().invoke(main, ["edit", *map(str, args)])


def composite() -> Image.Image:
    """Two faces on one 900x600 canvas: Grace Hopper's photo, and the shipped example
    face enlarged to 256 px."""
    canvas = Image.new("RGB", (900, 600), (40, 90, 120))
    canvas.paste(Image.open(PHOTO).convert("RGB"), (0, 0))
    canvas.paste(Image.open(EXAMPLE).convert("RGB").resize((256, 256), Image.BICUBIC), (600, 200))
    return canvas


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=int)


# ---- the blend itself, no model -------------------------------------------------------------
def test_the_mask_is_one_over_the_face_and_exactly_zero_outside_its_ellipse():
    u, v = np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 101))
    mask = face_mask(u, v)
    assert mask[56, 50] == 1.0                        # the face's centre
    assert mask[0, 0] == mask[0, 50] == mask[50, 0] == mask[100, 100] == 0.0  # crop's edges
    assert 0 < mask[56, 50 + 29] < 1                  # the feathered rim (radius 0.31)


def test_a_pasted_face_covers_its_square_and_the_smaller_of_two_overlapping_is_drawn_last():
    photo = Image.new("RGB", (200, 160), (10, 20, 30))
    big = np.array([[20, 10], [20, 150], [160, 150], [160, 10]], dtype=float)   # 140 px
    small = np.array([[70, 60], [70, 120], [130, 120], [130, 60]], dtype=float)  # 60 px
    red, green = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 255, 0))
    out = pixels(paste_back(photo, [(green, small), (red, big)]))
    assert out.shape == (160, 200, 3)
    assert out[10 + round(0.56 * 140) - 30, 90].tolist() == [255, 0, 0]   # the big face's centre
    assert out[60 + round(0.56 * 60), 100].tolist() == [0, 255, 0]       # the small one's, on top
    region = face_regions((160, 200), [big, small])
    assert (out[~region] == [10, 20, 30]).all()                          # nothing else moved
    assert region.sum() < 140 * 140                                     # inside the square


def test_a_crop_cut_from_the_photo_pastes_back_to_the_photo_within_interpolation():
    """warp then paste is the identity up to two bilinear resamplings: on a smooth photo
    (a gradient, 1 level a pixel at most) that is a level or two."""
    from vrfam_rt.align import warp

    x, y = np.meshgrid(np.arange(300), np.arange(200))
    photo = Image.fromarray(np.stack([x * 0.8, y, (x + y) * 0.4], -1).astype(np.uint8))
    quad = np.array([[60.3, 20.7], [50.1, 180.2], [209.6, 170.0], [219.8, 10.5]])  # tilted
    crop = warp(photo, quad, 256)
    out = pixels(paste_back(photo, [(crop, quad)]))
    assert np.abs(out - pixels(photo)).max() <= 2


# ---- photos through the CLI and the API -----------------------------------------------------
@pytest.mark.usefixtures("dlib")          # aligns photos
def test_a_two_face_png_comes_back_its_size_both_faces_edited_every_other_pixel_its_own(tmp_path):
    from vrfam_rt import EditPipeline

    composite().save(tmp_path / "two.png")
    result = edit(tmp_path / "two.png", "--attr", "Smiling", "--backend", "eager",
                  "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.stderr                 # the default model's note stays
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["two_Smiling+1.0.png"]
    edited = Image.open(tmp_path / "out" / "two_Smiling+1.0.png")
    assert edited.size == (900, 600) and read_provenance(edited.filename)["faces"] == 2
    pipe = EditPipeline.from_bundle(None, backend="eager")
    inversion = pipe.invert(tmp_path / "two.png")
    assert len(inversion) == 2 and inversion.indices == (0, 0)
    region = face_regions((600, 900), inversion.transforms.numpy())
    before, after = pixels(composite()), pixels(edited)
    assert np.array_equal(before[~region], after[~region])          # bit for bit
    reconstruction = pixels(pipe.edit(inversion, {}).photos[0][0])
    for quad in inversion.transforms.numpy():                       # each face on its own
        own = face_regions((600, 900), [quad])
        assert np.abs(after[own] - before[own]).mean() > 5          # pasted
        assert np.abs(after[own] - reconstruction[own]).mean() > 1  # and edited


@pytest.mark.usefixtures("dlib")          # aligns photos
def test_a_jpeg_comes_back_a_jpeg_upright_with_its_colour_profile(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    upright = composite()
    exif = Image.Exif()
    exif[0x0112] = 6                                  # stored turned; shown 90 deg clockwise
    upright.transpose(Image.ROTATE_90).save(tmp_path / "two.jpg", quality=95, exif=exif,
                                            icc_profile=icc)
    args = ["--attr", "Smiling", "--backend", "eager", "--color-match"]
    result = edit(tmp_path / "two.jpg", *args, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "two_Smiling+1.0.jpg") as out:
        assert out.format == "JPEG" and out.size == (900, 600)
        assert out.info["icc_profile"] == icc
        assert out.getexif().get(0x0112, 1) == 1      # nothing left to turn
        corner = pixels(out)[:40, 560:600].mean((0, 1))  # the canvas, where it was
    assert np.abs(corner - [40, 90, 120]).max() < 6       # upright: JPEG's error only
    again = edit(tmp_path / "two.jpg", *args, "--out", tmp_path / "out")
    assert again.exit_code == 1 and "--overwrite" in again.output   # it knows its JPEG
    assert edit(tmp_path / "two.jpg", *args, "--out", tmp_path / "out", "--overwrite",
                "--format", "png").exit_code == 0
    assert Image.open(tmp_path / "out" / "two_Smiling+1.0.png").format == "PNG"


@pytest.mark.usefixtures("dlib")          # aligns photos
def test_crop_writes_each_faces_crop_and_faces_picks_them(tmp_path):
    composite().save(tmp_path / "two.png")
    args = [tmp_path / "two.png", "--attr", "Smiling", "--backend", "eager", "--crop"]
    result = edit(*args, "--grid", "--out", tmp_path / "all")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "two_Smiling+1.0.png", "two_face2_Smiling+1.0.png", "two_face2_grid.png", "two_grid.png"]
    assert Image.open(tmp_path / "all" / "two_face2_Smiling+1.0.png").size == (64, 64)
    largest = edit(*args, "--faces", "largest", "--out", tmp_path / "one")
    assert largest.exit_code == 0, largest.output
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["two_Smiling+1.0.png"]
    first = pixels(Image.open(tmp_path / "all" / "two_Smiling+1.0.png"))
    assert np.abs(first - pixels(Image.open(tmp_path / "one" / "two_Smiling+1.0.png"))).max() <= 1
    refused = edit(*args, "--out", tmp_path / "all")              # face 2's file is there too
    assert refused.exit_code == 1 and "already holds" in refused.output
    bad = edit(*args, "--faces", "0", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "--faces" in bad.output and "Traceback" not in bad.output


def test_the_api_returns_the_photo_and_the_crops_beside_it(tmp_path):
    pytest.importorskip("dlib")
    from vrfam_rt import EditPipeline

    pipe = EditPipeline.from_bundle(None, backend="eager")
    buffer = io.BytesIO()
    composite().save(buffer, format="PNG")
    [photo] = pipe(buffer.getvalue(), {"Smiling": 1.0}, faces="largest")
    assert photo.size == (900, 600)
    result = pipe.edit(pipe.invert([buffer.getvalue()], faces=2), [{}, {"Smiling": 1.0}])
    assert len(result.crops) == 2 and len(result.photos) == 1 and len(result.photos[0]) == 2
    assert result.crops[0][1].size == (64, 64)
