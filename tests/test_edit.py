"""`vrfam-rt edit`: a real photo end to end, every input format, every bad input."""
import json

import matplotlib.cbook
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vrfam_rt.align import FaceAligner
from vrfam_rt.cli import main
from vrfam_rt.errors import VrfamError
from vrfam_rt.images import read_rgb
from vrfam_rt.pipeline import parse_edits

PHOTO = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
ATTRS = ("Smiling", "Eyeglasses", "Male")


def edit(*args):
    return CliRunner().invoke(main, ["edit", *map(str, args)])


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_a_real_photo_is_aligned_edited_and_gridded(tmp_path):
    result = edit(PHOTO, "--config", "tiny", "--attr", "Smiling=1", "--attr", "Eyeglasses=-0.5",
                  "--grid", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "grace_hopper_Smiling+1.0_Eyeglasses-0.5.png", "grace_hopper_grid.png"]
    with Image.open(tmp_path / "grace_hopper_grid.png") as grid:
        # input | reconstruction | the sequential edit, 64 px cells shown 4x
        assert grid.size == (3 * 256, 256)


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_alignment_levels_and_centres_the_eyes():
    aligner = FaceAligner()
    face = aligner.align(read_rgb(PHOTO), 256)
    points = aligner.landmarks(np.asarray(face))
    left, right = points[36:42].mean(0), points[42:48].mean(0)
    assert abs(left[1] - right[1]) < 0.03 * 256
    assert abs((left[0] + right[0]) / 2 - 128) < 0.03 * 256


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_alpha_sweep_writes_one_image_per_strength(tmp_path):
    result = edit(PHOTO, "--config", "tiny", "--attr", "Male", "--alpha-sweep", "-1:1:3",
                  "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "grace_hopper_Male+0.0.png", "grace_hopper_Male+1.0.png", "grace_hopper_Male-1.0.png"]


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_bad_inputs_are_reported_one_line_each_and_the_rest_goes_on(tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    (photos / "notes.jpg").write_text("not an image")
    Image.effect_noise((120, 120), 60).convert("RGB").save(photos / "noise.png")
    Image.new("L", (8300, 8300)).save(photos / "huge.png")
    Image.open(PHOTO).save(photos / "hopper.png")
    result = edit(photos, tmp_path / "missing.jpg", "--config", "tiny", "--attr", "Smiling",
                  "--out", tmp_path / "out")
    assert result.exit_code == 1
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 4
    assert any("notes.jpg: not a readable image" in e for e in errors)
    assert any("noise.png: no face found" in e for e in errors)
    assert any("huge.png: 8300x8300 is too large to decode safely" in e for e in errors)
    assert any("missing.jpg: not a readable image" in e for e in errors)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hopper_Smiling+1.0.png"]
    assert "4 of 5 inputs failed" in result.stdout


def test_unknown_attribute_lists_the_valid_ones_and_the_closest():
    with pytest.raises(VrfamError, match=r"unknown attribute 'Smilling'; did you mean Smiling\?"):
        parse_edits(["Smilling=1"], ATTRS)
    result = CliRunner().invoke(main, ["edit", PHOTO, "--config", "tiny", "--attr", "Glasses"])
    assert result.exit_code == 1 and "Eyeglasses" in result.stderr


def test_alpha_outside_the_trained_range_needs_force():
    with pytest.raises(VrfamError, match=r"outside \[-1.5, 1.5\].*--force"):
        parse_edits(["Smiling=2"], ATTRS)
    assert parse_edits(["Smiling=2"], ATTRS, force=True)[0].alphas == (("Smiling", 2.0),)
    with pytest.raises(VrfamError, match="outside"):
        parse_edits(["Smiling"], ATTRS, sweep="-3:3:3")
    with pytest.raises(VrfamError, match="not START:STOP:N"):
        parse_edits(["Smiling"], ATTRS, sweep="1:2")


def test_several_attributes_form_one_sequential_edit():
    (edit_,) = parse_edits(["Smiling=0.5", "Male"], ATTRS)
    assert edit_.alphas == (("Smiling", 0.5), ("Male", 1.0))
    assert edit_.name == "Smiling+0.5_Male+1.0"


@pytest.mark.parametrize("mode,save", [
    ("RGBA", {"format": "PNG"}), ("LA", {"format": "PNG"}), ("L", {"format": "BMP"}),
    ("P", {"format": "PNG"}), ("I;16", {"format": "PNG"}), ("RGB", {"format": "WEBP"}),
    ("RGB", {"format": "TIFF"}), ("CMYK", {"format": "JPEG"})])
def test_every_format_and_mode_decodes_to_rgb(tmp_path, mode, save):
    path = tmp_path / f"img.{save['format'].lower()}"
    Image.new(mode, (40, 30)).save(path, **save)
    image = read_rgb(path)
    assert image.mode == "RGB" and image.size == (40, 30)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6                                       # rotate 90 degrees clockwise
    Image.new("RGB", (40, 30)).save(tmp_path / "r.jpg", exif=exif)
    assert read_rgb(tmp_path / "r.jpg").size == (30, 40)


def test_no_align_edits_any_image(tmp_path):
    Image.effect_noise((90, 70), 60).convert("RGB").save(tmp_path / "crop.png")
    result = edit(tmp_path / "crop.png", "--config", "tiny", "--attr", "Smiling", "--no-align",
                  "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["crop_Smiling+1.0.png"]


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_ort_backend_exports_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VRFAM_RT_CACHE", str(tmp_path / "cache"))
    args = [PHOTO, "--config", "tiny", "--attr", "Smiling", "--backend", "ort", "--out",
            tmp_path / "out"]
    first = edit(*args)
    assert first.exit_code == 0, first.output
    assert "exporting fp32 ONNX" in first.stderr
    (cache,) = (tmp_path / "cache").iterdir()
    assert json.loads((cache / "fp32" / "manifest.json").read_text())["precision"] == "fp32"
    second = edit(*args)
    assert second.exit_code == 0 and "exporting" not in second.stderr
    eager = edit(PHOTO, "--config", "tiny", "--attr", "Smiling", "--out", tmp_path / "eager")
    assert eager.exit_code == 0
    a = np.asarray(Image.open(tmp_path / "out" / "grace_hopper_Smiling+1.0.png"), dtype=int)
    b = np.asarray(Image.open(tmp_path / "eager" / "grace_hopper_Smiling+1.0.png"), dtype=int)
    assert np.abs(a - b).max() <= 1                        # the same picture, to 8-bit rounding


def test_cuda_graphs_are_refused_without_cuda_and_for_other_backends(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    result = edit(PHOTO, "--config", "tiny", "--attr", "Smiling", "--cuda-graphs", "--out", tmp_path)
    assert result.exit_code == 1 and "CUDA graphs need a CUDA device" in result.output
    result = edit(PHOTO, "--config", "tiny", "--attr", "Smiling", "--backend", "ort",
                  "--cuda-graphs", "--out", tmp_path)
    assert result.exit_code == 1 and "applies to the eager backend" in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replay_matches_eager(tiny):
    from vrfam_rt.backends.eager import EagerBackend

    plain = EagerBackend(tiny, device="cuda")
    graphs = EagerBackend(tiny, device="cuda", cuda_graphs=True)
    for batch in (1, 3):                       # one captured graph per input shape
        image = torch.rand(batch, 3, 64, 64, device="cuda") * 2 - 1
        for _ in range(2):                     # capture, then replay with the same buffers
            wplus = graphs.encoder(image)
            torch.testing.assert_close(wplus, plain.encoder(image), rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(graphs.generator(wplus), plain.generator(wplus),
                                       rtol=1e-3, atol=1e-3)


def test_the_python_api_edits_a_photo_like_the_cli(tmp_path):
    """EditPipeline.from_bundle(None, backend="ort") is the shipped default model, its
    graphs exported into the cache; a call takes paths or PIL images and an edit mapping
    and returns PIL images, the same pixels as `vrfam-rt edit` writes."""
    from vrfam_rt import EditPipeline
    from vrfam_rt.suite import resolve

    example = resolve(None).parent / "faces" / "example.png"
    pipe = EditPipeline.from_bundle(None, backend="ort", cache_dir=tmp_path / "cache",
                                    align=False)
    [edited] = pipe(example, {"Smiling": 1.0})
    assert edited.mode == "RGB" and edited.size == (64, 64)
    assert len(list((tmp_path / "cache").glob("*/fp32/manifest.json"))) == 1
    recon = pipe([Image.open(example), example])                      # no edit: reconstructions
    assert len(recon) == 2 and np.array_equal(np.asarray(recon[0]), np.asarray(recon[1]))
    assert not np.array_equal(np.asarray(recon[0]), np.asarray(edited))
    result = CliRunner().invoke(main, ["edit", str(example), "--attr", "Smiling", "--no-align",
                                       "--backend", "ort", "--out", str(tmp_path / "cli")],
                                env={"VRFAM_RT_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    cli = np.asarray(Image.open(tmp_path / "cli" / "example_Smiling+1.0.png"))
    assert np.array_equal(cli, np.asarray(edited))
    with pytest.raises(VrfamError, match="unknown attribute 'Smiles'"):
        pipe(example, {"Smiles": 1.0})
