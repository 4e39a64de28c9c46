"""`vrfam-rt edit`: photos in, edited faces out (vrfam_rt.pipeline.EditPipeline)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from vrfam_rt.cli.common import (FILE, bundle_from, bundle_options, cache_root, runtime_options,
                                 say, set_threads)
from vrfam_rt.errors import VrfamError


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--attr", "attrs", multiple=True, metavar="NAME[=ALPHA]",
              help="Attribute and strength (default 1.0); repeat to edit one after another.")
@click.option("--alpha-sweep", metavar="START:STOP:N",
              help="Render N strengths from START to STOP for the given attributes.")
@runtime_options()
@bundle_options("edit with")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(1, 1024))
@click.option("--out", default="edits", show_default=True, type=FILE)
@click.option("--grid", is_flag=True, help="Also write input | reconstruction | edits per input.")
@click.option("--no-align", is_flag=True, help="Skip face alignment (inputs are face crops).")
@click.option("--force", is_flag=True, help="Allow alphas outside [-1.5, 1.5].")
@click.option("--cuda-graphs", is_flag=True,
              help="Eager on CUDA: replay each stage as a CUDA graph (about 2x at batch 1).")
def edit(inputs, attrs, alpha_sweep, backend, precision, bundle_path, config, seed, batch, out,
         grid, no_align, force, device, cuda_graphs, threads):
    """Edit facial attributes of photos (files or folders).

    Example: vrfam-rt edit photo.jpg --bundle bundles/ffhq --attr Smiling=1.0 --grid
    """
    import torch

    from vrfam_rt.images import expand_inputs, save_png, to_pil
    from vrfam_rt.pipeline import EditPipeline, parse_edits

    set_threads(threads)
    bundle = bundle_from(bundle_path, config, seed)
    edits = parse_edits(list(attrs), bundle.attributes, alpha_sweep, force)
    files = expand_inputs(inputs)
    pipeline = EditPipeline.from_bundle(bundle, backend, precision, device, cache_root(),
                                        max_batch=batch, threads=threads, align=not no_align,
                                        cuda_graphs=cuda_graphs,
                                        say=say)
    failed, written, stems = [], 0, {}
    with click.progressbar(length=len(files), label="editing", file=sys.stderr) as bar:
        for start in range(0, len(files), batch):
            chunk, faces = [], []
            for path in files[start:start + batch]:
                try:
                    faces.append(pipeline.load(path))
                    chunk.append(path)
                except VrfamError as exc:
                    failed.append(path)
                    click.echo(f"\nerror: {exc}", err=True)
            if chunk:
                images = pipeline.run(torch.stack(faces), edits)
                for i, path in enumerate(chunk):
                    stem = _unique(path.stem, stems)
                    for e in edits:
                        save_png(to_pil(images[e.name][i]), Path(out) / f"{stem}_{e.name}.png")
                        written += 1
                    if grid:
                        save_png(_grid(images, i, edits), Path(out) / f"{stem}_grid.png")
                        written += 1
            bar.update(len(files[start:start + batch]))
    click.echo(f"wrote {written} images to {out}" + (f"; {len(failed)} of {len(files)} inputs "
                                                     "failed" if failed else ""))
    if failed:
        sys.exit(1)


def _unique(stem: str, seen: dict) -> str:
    seen[stem] = seen.get(stem, 0) + 1
    return stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"


def _grid(images: dict, i: int, edits):
    """input | reconstruction | each edit, side by side at the generator's resolution
    (pixels repeated up to GRID_MIN_CELL for small generators, so the grid is viewable)."""
    import torch
    import torch.nn.functional as F

    from vrfam_rt.images import to_pil

    size = images["reconstruction"].shape[-1]
    tiles = [F.interpolate(images["input"][i:i + 1].float(), size=(size, size), mode="bicubic",
                           align_corners=False)[0].cpu(),
             images["reconstruction"][i].cpu()] + [images[e.name][i].cpu() for e in edits]
    grid = torch.cat(tiles, dim=2)
    repeat = max(1, GRID_MIN_CELL // size)
    if repeat > 1:
        grid = grid.repeat_interleave(repeat, dim=1).repeat_interleave(repeat, dim=2)
    return to_pil(grid)


GRID_MIN_CELL = 256


COMMANDS = (edit,)
