"""`vrfam-rt edit`: photos in, the same photos with their faces edited out
(vrfam_rt.pipeline.EditPipeline, vrfam_rt.pasteback), or the edited crops with --crop."""
from __future__ import annotations

import glob
import sys
from pathlib import Path

import click

from vrfam_rt.cli.common import (OUT_DIR, Progress, bundle_from, bundle_options,
                                  check_outputs, many_option, runtime_options, say)
from vrfam_rt.errors import as_flags
from vrfam_rt.images import DRAFT_SIDE, MAX_PIXELS
from vrfam_rt.on_demand import MAX_BATCH


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@many_option("--attr", "attrs", None, (), "Attribute (any case) and strength in [-1.5, 1.5] "
             "(default 1.0); several are applied one after another.",
             metavar="NAME[=ALPHA],...")
@click.option("--alpha-sweep", metavar="START:STOP:N",
              help="Render N strengths from START to STOP for the --attr names (given "
              "without =ALPHA); file names carry as many digits as the sweep needs.")
@runtime_options()
@bundle_options("edit with")
@click.option("--batch", default=MAX_BATCH, show_default=True, type=click.IntRange(1, 1024),
              help="Faces per forward pass.")
@click.option("--out", default="edits", show_default=True, type=OUT_DIR,
              help="Folder for the edited images (made if missing; checked before any model work).")
@click.option("--grid", is_flag=True,
              help="Also write input | reconstruction | edits per face (aligned crops).")
@click.option("--crop", is_flag=True,
              help="Write each face's aligned, edited crop (the generator's size) instead "
              "of the photo.")
@click.option("--faces", default="all", show_default=True, metavar="all|largest|N",
              callback=lambda ctx, param, value: _faces(value),
              help="Which faces of a photo to edit: all, the largest, or the N largest.")
@click.option("--format", "image_format", type=click.Choice(["png", "jpg"]),
              help="Photos' file format (default: JPEG for a JPEG input, else PNG).")
@click.option("--color-match", is_flag=True,
              help="Match each edited face's colours to the photo's before blending it in.")
@click.option("--no-align", is_flag=True,
              help="Skip face alignment (inputs are face crops; the edited crops are written).")
@click.option("--force", is_flag=True, help="Allow alphas outside [-1.5, 1.5].")
@click.option("--overwrite", is_flag=True,
              help="Replace images an earlier `vrfam-rt edit` wrote under the same names in "
              "--out (other files there are never replaced).")
@click.option("--max-pixels", default=MAX_PIXELS, show_default=True, type=click.IntRange(1),
              help="Refuse photos that decode to more pixels (JPEGs decode reduced to about "
              f"{DRAFT_SIDE} px a side first).")
@click.option("--judge", is_flag=True,
              help="Print the judge oracle's reading (probability) of each edited attribute in "
              "the reconstruction and in each edit; for bundles of the procedural faces "
              "(the judge took no part in training).")
@click.option("--start", default=0.0, type=click.FloatRange(0), metavar="SECONDS",
              help="Video: edit from this time on.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="Video: edit this long a part (default: to the end).")
@click.option("--no-smooth", is_flag=True,
              help="Video: cut each frame's faces where they are found, without smoothing "
              "the alignment over time.")
@click.option("--detect-rate", type=click.FloatRange(0, min_open=True), metavar="PER_SECOND",
              help="Video: look for faces this often (and on a scene cut) and follow them "
              "in between with the landmark predictor alone: faster, a little less steady "
              "(default: look in every frame).")
@click.option("--cuda-graphs", is_flag=True,
              help="Eager on CUDA: replay each stage as a CUDA graph (about 2x at batch 1).")
def edit(inputs, attrs, alpha_sweep, backend, precision, bundle_path, method, config, seed,
         batch, out, grid, crop, faces, image_format, color_match, no_align, force, overwrite,
         max_pixels, judge, start, duration, no_smooth, detect_rate, device, cuda_graphs,
         threads):
    """Edit facial attributes of photos (files or folders).

    Writes STEM_EDIT.png (STEM_EDIT.jpg for a JPEG) per input and edit into --out: the
    photo at its own size (EXIF orientation applied, ICC profile kept) with every face
    edited in place and blended in through a feathered mask; the pixels outside the
    faces are the input's. --crop writes the aligned crops instead (STEM_EDIT.png for
    the largest face, STEM_faceK_EDIT.png for the K-th largest), --grid adds
    STEM_grid.png (STEM_faceK_grid.png) per face. Each file records how it was made
    (bundle digest, method, backend, precision, edit; `vrfam-rt info IMAGE` prints it).
    An existing file of those names is never replaced silently: pass --overwrite to
    replace an earlier edit's images.

    A video (.mp4, .mov, .mkv, .webm) comes back as STEM_EDIT.SUFFIX: every frame's
    faces edited (the alignment smoothed over time), at the clip's size and frame rate,
    H.264 (VP9 in .webm), the audio copied untouched; --start/--duration edit a part.

    Exit status: 0 when every input was edited, 1 when some failed (each named on
    stderr), 2 for a usage error (an unknown attribute, an alpha out of range).

    Example: vrfam-rt edit photo.jpg --bundle bundles/ffhq --attr Smiling=1.0 --grid
    """
    from vrfam_rt.errors import UsageError
    from vrfam_rt.images import expand_inputs, save_photo, save_png
    from vrfam_rt.pipeline import RECONSTRUCTION, EditPipeline, face_limit, parse_edits
    from vrfam_rt.suite import method_of, synthetic_note
    from vrfam_rt.video import VIDEO_SUFFIXES, is_video

    bundle = bundle_from(bundle_path, config, seed, method)
    edits = parse_edits(list(attrs), bundle.attributes, alpha_sweep, force)
    reader = judge_reader(bundle) if judge else None
    files = expand_inputs(inputs)
    stems = _stems(files)
    videos = [(path, stem) for path, stem in zip(files, stems) if is_video(path)]
    if videos and (crop or grid or judge or no_align):
        raise UsageError(f"{videos[0][0]} is a video: --crop, --grid, --judge and --no-align "
                         "apply to photos")
    if (start or duration) and not videos:
        raise UsageError("--start and --duration choose a part of a video; no input is one "
                         f"({', '.join(sorted(VIDEO_SUFFIXES))})")
    crop = crop or no_align            # an unaligned input is a crop: its edit is one too
    formats = [path.suffix.lower()[1:] if is_video(path) else None if crop else
               image_format or _format(path) for path in files]
    check_outputs([Path(out) / name for stem, kind in zip(stems, formats)
                   for name in _names(stem, edits, grid, kind, face_limit(faces), Path(out))],
                  overwrite)
    photos = [k for k, path in enumerate(files) if not is_video(path)]
    files, stems, formats = ([items[k] for k in photos] for items in (files, stems, formats))
    pipeline = EditPipeline.from_bundle(bundle, backend, precision, device,
                                        max_batch=batch, threads=threads, align=not no_align,
                                        cuda_graphs=cuda_graphs, say=say, max_pixels=max_pixels)
    made = {"bundle": str(bundle.path) if bundle.path else f"random {config}, seed {seed}",
            "bundle_digest": bundle.digest, "method": method_of(bundle),
            "backend": pipeline.backend.name, "precision": pipeline.backend.precision,
            "device": str(pipeline.device), "align": not no_align,
            "color_match": color_match}
    # the grid and the judge show the reconstruction beside the edits; a plain edit
    # renders only what it writes
    wanted = ([RECONSTRUCTION] if grid or reader else []) + edits
    failed, readings = [], []
    progress = Progress(len(files), "editing", "photos", "images")

    def write(image, name: str, record: dict, kind: str | None = None) -> None:
        """A crop or grid as PNG (kind None), or a photo in its format."""
        if kind is None:
            save_png(image, Path(out) / name, record)
        else:
            save_photo(image, Path(out) / name, record, kind)
        progress.wrote(Path(out) / name)

    for first, result in pipeline.stream(files, wanted, faces=faces, photos=not crop,
                                         color_match=color_match):
        chunk = files[first:first + pipeline.max_batch]
        for failure in result.failures:
            failed.append(failure.source)
            params = click.get_current_context().command.params      # errors read as flags
            say(f"error: {as_flags(str(failure.error), params)}")
        for i, edited in enumerate(result.photos):
            if edited is None:
                continue
            source = made | {"input": str(chunk[i]), "faces": result.inversion.indices.count(i)}
            stem, kind = stems[first + i], formats[first + i]
            for e, image in zip(wanted, edited):
                if e.alphas:
                    write(image, _edit_file(stem, e, kind),
                          source | {"image": "photo", "edit": dict(e.alphas)}, kind)
        for k, (face, crops) in enumerate(zip(result.inversion, result.crops)):
            path = chunk[face.index]
            number = result.inversion.indices[:k].count(face.index) + 1   # 1: the largest
            stem = _face_stem(stems[first + face.index], number)
            source = made | {"input": str(path), "face": number}
            for e, image in zip(wanted, crops):
                if e.alphas and crop:
                    write(image, _edit_file(stem, e),
                          source | {"image": "edit", "edit": dict(e.alphas)})
            if grid:
                write(_grid([_tile(face.crop, crops[0].width), *crops],
                            ["input"] + [e.label for e in wanted]), _grid_file(stem),
                      source | {"image": "grid (input | reconstruction | edits)",
                                "edits": [dict(e.alphas) for e in edits]})
            if reader:
                readings.append((Path(out) / _grid_file(stem) if grid else path,
                                 reader(crops, wanted)))
        done = result.inversion.indices
        progress.update(len(chunk), chunk[done[-1]].name if done else "")
    written = len(progress.written)
    clips = _videos(pipeline, videos, edits, Path(out), made, start, duration, faces,
                    not no_smooth, color_match, detect_rate, failed)
    inputs = len(files) + len(videos)
    note = synthetic_note(bundle) if not no_align and len(failed) < inputs else None
    if note:
        say(f"note: {note}")
    click.echo(f"wrote {written} image{'' if written == 1 else 's'}"
               + (f" and {clips} video{'' if clips == 1 else 's'}" if videos else "")
               + f" to {out}" + (f"; {len(failed)} of {inputs} inputs failed" if failed else ""))
    for where, line in readings:
        click.echo(f"{where}\n  {line}")
    if failed:
        sys.exit(1)


def _videos(pipeline, videos: list, edits, out: Path, made: dict, start: float,
            duration: float | None, faces: str, smooth: bool, color_match: bool,
            detect_rate: float | None, failed: list) -> int:
    """Edit each (video, stem) under each edit into `out` (vrfam_rt.video), a progress
    bar of frames/s per file; a video that cannot be read is named in `failed`. Returns
    how many videos were written."""
    from vrfam_rt.errors import VrfamError
    from vrfam_rt.video import edit_video, probe

    written = 0
    for path, stem in videos:
        try:
            frames, rate, _ = probe(path)
        except VrfamError as exc:
            failed.append(str(path))
            say(f"error: {exc}")
            continue
        part = frames - round(start * float(rate))
        if duration is not None:
            part = min(part, round(duration * float(rate)))
        for e in edits:
            target = out / _edit_file(stem, e, path.suffix.lower()[1:])
            progress = Progress(max(part, 1), "editing", "frames", "videos")
            record = made | {"input": str(path), "edit": dict(e.alphas), "start": start,
                             "duration": duration, "smooth": smooth,
                             "detect_rate": detect_rate}
            try:
                report = edit_video(pipeline, path, target, e, start, duration, faces, smooth,
                                    color_match, progress=progress.update, provenance=record,
                                    detect_rate=detect_rate)
            except VrfamError as exc:
                failed.append(str(path))
                say(f"error: {exc}")
                break
            progress.wrote(target)
            written += 1
            say(f"{target}: {report.frames} frames at {float(report.rate):g} frames/s, "
                f"{report.edited} with a face, {report.codec}"
                + (", audio copied" if report.audio else ""))
    return written


def judge_reader(bundle):
    """reader(crops, edits) -> 'judge P(Smiling): reconstruction 0.08, Smiling +1.0
    0.97': the judge oracle's sigmoid of each edited attribute in one face's crops (PIL,
    one per edit). Refused (exit 2) for bundles the judge cannot read."""
    import torch

    from vrfam_rt.errors import UsageError
    from vrfam_rt.images import normalise, to_tensor
    from vrfam_rt.synthetic.oracles import load_judge
    from vrfam_rt.synthetic.faces import ATTRIBUTES

    unknown = [a for a in bundle.attributes if a not in ATTRIBUTES]
    size = bundle.config.generator.size
    if unknown or size != 64:
        raise UsageError("--judge reads the procedural 64-px faces; this bundle renders "
                         f"{size} px" + (f" and edits {unknown[0]}" if unknown else ""))
    oracle = load_judge().eval()

    def read(crops, edits):
        names = list(dict.fromkeys(a for e in edits for a, _ in e.alphas))
        columns = [ATTRIBUTES.index(a) for a in names]
        images = normalise(torch.stack([to_tensor(c) for c in crops]), size)  # [E,3,64,64]
        with torch.no_grad():
            probs = torch.sigmoid(oracle(images))
        return "; ".join(f"judge P({a}): " + ", ".join(
            f"{e.label} {p[column]:.2f}" for e, p in zip(edits, probs))
            for a, column in zip(names, columns))

    return read


def _stems(files: list[Path]) -> list[str]:
    """Each input's file-name stem in --out: its own, or STEM-2, STEM-3 ... for repeats."""
    seen, stems = {}, []
    for path in files:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        stems.append(path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}")
    return stems


def _faces(value: str) -> str:
    """--faces all|largest|N, checked."""
    from vrfam_rt.errors import UsageError
    from vrfam_rt.pipeline import face_limit

    try:
        face_limit(value, "--faces")
        return value
    except UsageError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"--faces {value!r}: ")) from None


def _format(path: Path) -> str:
    """A photo's output format when --format is not given: JPEG for a JPEG, else PNG."""
    return "jpg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"


def _face_stem(stem: str, number: int) -> str:
    """The stem of a photo's `number`-th largest face's files: the photo's for the
    largest, STEM_faceK for the others."""
    return stem if number == 1 else f"{stem}_face{number}"


def _edit_file(stem: str, edit, kind: str | None = None) -> str:
    return f"{stem}_{edit.name}.{kind or 'png'}"


def _grid_file(stem: str) -> str:
    return f"{stem}_grid.png"


def _names(stem: str, edits, grid: bool, kind: str | None, faces: int | None,
           out: Path) -> list[str]:
    """Every file one input's edit may write (what check_outputs looks for first):
    `kind` None for crops (one set per face), else the photos' format. With all faces,
    how many there are is known only later: the files of faces after the first that
    are already in `out` are checked."""
    def face_names(stem: str) -> list[str]:
        return ([_edit_file(stem, e) for e in edits] if kind is None else []) + \
            ([_grid_file(stem)] if grid else [])

    names = [_edit_file(stem, e, kind) for e in edits] if kind else []
    if faces is not None:
        return names + [n for k in range(1, faces + 1) for n in face_names(_face_stem(stem, k))]
    names += face_names(stem)
    wanted = set(face_names(""))
    for path in out.glob(f"{glob.escape(stem)}_face*"):
        number, _, rest = path.name[len(stem) + len("_face"):].partition("_")
        if number.isdigit() and int(number) > 1 and "_" + rest in wanted:
            names.append(path.name)
    return names


def _tile(crop, size: int):
    """The input's uint8 crop [3,S,S] as a PIL image of the generator's size x size."""
    from vrfam_rt.images import normalise, to_pil

    return to_pil(normalise(crop[None], size)[0])


def _grid(tiles: list, labels: list[str]):
    """PIL tiles of one size (input | reconstruction | each edit) side by side (pixels
    repeated up to GRID_MIN_CELL for small generators, so the grid is viewable), each
    cell under a label band naming it."""
    from PIL import Image, ImageDraw, ImageFont

    size = tiles[0].width
    repeat = max(1, GRID_MIN_CELL // size)
    cell = size * repeat
    font = ImageFont.load_default(size=max(12, cell // 14))
    band = round(font.size * 1.6)
    grid = Image.new("RGB", (cell * len(tiles), cell + band), "white")
    draw = ImageDraw.Draw(grid)
    for k, (tile, label) in enumerate(zip(tiles, labels)):
        grid.paste(tile.resize((cell, cell), Image.NEAREST), (k * cell, band))
        fitted = font          # a long label ("Black_Hair +1.0, Eyeglasses +1.0") shrinks
        while fitted.size > 8 and draw.textlength(label, font=fitted) > cell - 8:
            fitted = ImageFont.load_default(size=fitted.size - 1)
        draw.text((k * cell + cell / 2, band / 2), label, fill="black", font=fitted, anchor="mm")
    return grid


GRID_MIN_CELL = 256


COMMANDS = (edit,)
