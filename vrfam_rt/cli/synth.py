"""`vrfam-rt synth`: procedural faces with known labels, and the oracles that judge them.

Heavy libraries are imported inside the commands.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from vrfam_rt.cli.common import FILE, OUT_DIR, OUT_FILE, check_outputs, table, write_json
from vrfam_rt.errors import VrfamError

ATTR_FILE = "list_attr_celeba.txt"
IDENTITY_FILE = "identity_synth.txt"
PARAMS_FILE = "params.safetensors"
SHORT_NAMES = {"Smiling": "Smile", "Eyeglasses": "Glasses", "Mouth_Slightly_Open": "Open",
               "Black_Hair": "Black", "Blond_Hair": "Blond", "Pale_Skin": "Pale"}


@click.group()
def synth():
    """Procedural cartoon faces with ground-truth attributes and identities."""


@synth.command("render")
@click.option("--n", required=True, type=click.IntRange(1), help="Number of images.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same images.")
@click.option("--size", default=64, show_default=True, type=click.IntRange(16, 1024),
              help="Image size in pixels (64 or 128 are the intended ones).")
@click.option("--views", default=1, show_default=True, type=click.IntRange(1),
              help="Images per person (attributes, pose and scene redrawn per view).")
@click.option("--out", required=True, type=OUT_DIR, help="Folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing --out folder.")
def render_(n, seed, size, views, out, force):
    """Faces -> PNGs, list_attr_celeba.txt, identity_synth.txt and params.safetensors.

    The attribute list has CelebA's layout (count line, names line, `file 1/-1 ...`
    rows); identity_synth.txt has CelebA's `file id` rows; params.safetensors holds the
    parameters, so the same faces can be re-rendered with an attribute flipped.

    Example: vrfam-rt synth render --n 10000 --seed 0 --size 64 --out data/synth64
    """
    from safetensors.torch import save_file

    from vrfam_rt.fileio import check_replaceable, staged_dir
    from vrfam_rt.images import save_png, to_pil
    from vrfam_rt.synthetic.faces import ATTRIBUTES, render, sample_params, write_attr_file

    check_replaceable(out, "render folder", force)
    params = sample_params(n, seed, views=views)
    files = [f"{i:06d}.png" for i in range(n)]
    render_seconds = 0.0
    with staged_dir(out, "render folder", "vrfam-rt synth render", force) as tmp, click.progressbar(range(0, n, 256), label="rendering",
                                                   file=sys.stderr) as chunks:
        for start in chunks:
            started = time.perf_counter()
            images = render(params[start:start + 256], size)
            render_seconds += time.perf_counter() - started
            for i, image in enumerate(images, start):
                save_png(to_pil(image), tmp / files[i])
        write_attr_file(tmp / ATTR_FILE, files, params.attributes, ATTRIBUTES)
        (tmp / IDENTITY_FILE).write_text(
            "".join(f"{f} {i}\n" for f, i in zip(files, params.identity_id.tolist())))
        save_file(params.to_tensors(), str(tmp / PARAMS_FILE))
        (tmp / "synth.json").write_text(json.dumps({
            "command": f"vrfam-rt synth render --n {n} --seed {seed} --size {size} "
                       f"--views {views} --out {out}",
            "n": n, "seed": seed, "size": size, "views": views, "attributes": ATTRIBUTES,
            "positive_rate": dict(zip(ATTRIBUTES, params.attributes.mean(0).tolist())),
            "render_seconds": render_seconds}, indent=2) + "\n")
    click.echo(f"wrote {n} faces of {params.identity_id.max().item() + 1} people ({size}px) "
               f"to {out}; drawing took {render_seconds:.2f} s ({n / render_seconds:.0f}/s)")


@synth.command("sheet")
@click.option("--seed", default=0, show_default=True, help="Same seed, same faces.")
@click.option("--size", default=64, show_default=True, type=click.IntRange(16, 1024),
              help="Face size in pixels.")
@click.option("--out", required=True, type=OUT_FILE,
              help="PNG of 8x8 faces; NAME-flips.png beside it shows attribute flips.")
@click.option("--overwrite", is_flag=True,
              help="Replace sheets an earlier `vrfam-rt synth sheet` wrote there (other files "
              "are never replaced).")
def sheet(seed, size, out, overwrite):
    """Contact sheets for a person to judge the renders.

    Example: vrfam-rt synth sheet --out benchmarks/results/synthetic-faces-64.png
    """
    import torch

    from vrfam_rt.images import save_png, to_pil
    from vrfam_rt.synthetic.faces import ATTRIBUTES, contact_sheet, render, sample_params

    flips = out.with_name(f"{out.stem}-flips.png")
    check_outputs([out, flips], overwrite)
    made = {"made_by": "vrfam-rt synth sheet", "seed": seed, "size": size}
    params = sample_params(64, seed)
    save_png(to_pil(contact_sheet(render(params, size), columns=8)), out, made)
    people = params[:6]
    rows = []
    for i in range(len(people)):
        one = people[i:i + 1]
        rows += [render(one, size)] + [
            render(one.with_attributes(**{a: 1 - one.attribute(a)}), size) for a in ATTRIBUTES]
    grid = to_pil(contact_sheet(torch.cat(rows), columns=len(ATTRIBUTES) + 1))
    save_png(_with_labels(grid, ["original"] + [SHORT_NAMES.get(a, a) for a in ATTRIBUTES],
                          cell=size + 2), flips, made | {"image": "attribute flips"})
    click.echo(f"wrote {out} and {flips} (columns: original, then each attribute flipped)")


def _with_labels(grid, labels: list[str], cell: int):
    """A white strip with one label per column above `grid` (a PIL image)."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (grid.width, 14 + grid.height), "white")
    strip.paste(grid, (0, 14))
    draw = ImageDraw.Draw(strip)
    for i, label in enumerate(labels):
        draw.text((4 + i * cell, 2), label, fill="black")
    return strip


@synth.command("train-oracle")
@click.option("--out", required=True, type=OUT_DIR, help="Folder for weights and oracle.json.")
@click.option("--steps", default=2000, show_default=True, type=click.IntRange(1),
              help="Training steps of each network.")
@click.option("--batch", default=64, show_default=True, type=click.IntRange(4),
              help="Renders per step (the identity net sees batch/2 people, 2 views each).")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the training renders and the initial weights.")
@click.option("--force", is_flag=True, help="Overwrite weights in --out.")
@click.option("--judge", is_flag=True, help="Train only a second attribute oracle (use "
              "another --seed): the judge that scores models the first one helped train.")
def train_oracle(out, steps, batch, seed, force, judge):
    """Train the attribute oracle and the identity embedding on fresh renders; print
    their accuracy on held-out renders.

    Example: vrfam-rt synth train-oracle --out vrfam_rt/assets/oracle
    """
    from vrfam_rt.synthetic.oracles import (JUDGE_REPORT, REPORT, TrainConfig, save_oracles,
                                          train_judge, train_oracles)

    report_file = out / (JUDGE_REPORT if judge else REPORT)
    if report_file.exists() and not force:
        raise VrfamError(f"{report_file} already exists; choose another --out or pass --force")
    if batch % 2:
        raise VrfamError(f"--batch {batch} must be even (two views per person)")
    config = TrainConfig(steps=steps, batch=batch, seed=seed)

    def log(net, step, loss):
        click.echo(f"{net} step {step}: loss {loss:.4f}", err=True)

    if judge:
        command = (f"vrfam-rt synth train-oracle --judge --out {out} --steps {steps} "
                   f"--batch {batch} --seed {seed}")
        report = train_judge(config, out, command, log=lambda s, l: log("judge", s, l))
        accuracy = report["attributes"]
        click.echo(f"judge attribute oracle: mean held-out accuracy "
                   f"{accuracy['mean_accuracy']:.4f}; wrote {out}")
        return

    attributes, identity, report = train_oracles(config, log=log)
    report["command"] = (f"vrfam-rt synth train-oracle --out {out} --steps {steps} "
                         f"--batch {batch} --seed {seed}")
    save_oracles(out, attributes, identity, report)
    click.echo(format_report(report))
    click.echo(f"wrote {out}")


@synth.command("eval-oracle")
@click.option("--weights", type=FILE, help="Folder of oracle weights [default: the shipped "
              "vrfam_rt/assets/oracle].")
@click.option("--json", "json_path", type=OUT_FILE,
              help="Also write the measurements as JSON to this file.")
def eval_oracle(weights, json_path):
    """Measure oracle weights on held-out renders, including ground-truth attribute flips.

    Example: vrfam-rt synth eval-oracle --json benchmarks/results/oracle-synthetic.json
    """
    from vrfam_rt.synthetic.oracles import evaluate_oracles, load_oracles

    report = evaluate_oracles(*load_oracles(weights))
    click.echo(format_report(report))
    write_json(json_path, report)



@synth.command("eval-generator")
@click.option("--bundle", "bundle_path", required=True, type=FILE,
              help="Bundle whose generator was distilled from the renderer.")
@click.option("--n", default=2000, show_default=True, type=click.IntRange(1),
              help="Held-out samples.")
@click.option("--json", "json_path", type=OUT_FILE,
              help="Also write the measurements as JSON to this file.")
@click.option("--sheet", type=OUT_FILE,
              help="Also write a PNG: 8 renders above the generator's samples of the same z.")
def eval_generator(bundle_path, n, json_path, sheet):
    """Oracle agreement of a generator trained by `vrfam-rt train generator`: the shipped
    attribute oracle's verdicts on its samples against the attributes the renderer draws
    for the same z (and the oracle's accuracy on those renders, the ceiling).

    Example: vrfam-rt synth eval-generator --bundle runs/generator/bundle --sheet g.png
    """
    from vrfam_rt.images import save_png, to_pil
    from vrfam_rt.suite import open_bundle
    from vrfam_rt.training.generator import comparison_images, oracle_agreement
    from vrfam_rt.synthetic.oracles import load_judge, load_oracles
    from vrfam_rt.synthetic.faces import contact_sheet

    generator = open_bundle(bundle_path, components=("generator",)).generator
    report = oracle_agreement(generator, load_oracles()[0], n, judge=load_judge())
    rows = [{"attribute": a, **v, "judge": report["judge_attributes"][a]["agreement"]}
            for a, v in report["attributes"].items()]
    rows.append({"attribute": "mean", "agreement": report["mean_agreement"],
                 "judge": report["judge_agreement"],
                 "render_accuracy": report["mean_render_accuracy"]})
    click.echo(f"oracle agreement on {n} held-out samples (pixel L1 to the renders "
               f"{report['pixel_l1']:.4f}); judge: the second oracle, which took no part "
               "in training")
    click.echo(table(rows, [("attribute", "attribute", ""), ("generated", "agreement", ".3f"),
                             ("judge", "judge", ".3f"),
                             ("rendered", "render_accuracy", ".3f")]))
    write_json(json_path, report)
    if sheet:
        save_png(to_pil(contact_sheet(comparison_images(generator), columns=8)), sheet)


@synth.command("suite")
@click.option("--out", required=True, type=OUT_DIR, help="Suite folder to write.")
@click.option("--vrfam", required=True, type=FILE,
              help="Bundle: VR encoder, nonlinear transformers.")
@click.option("--interfacegan", required=True, type=FILE, help="Bundle: boundary edits.")
@click.option("--interfacegan-conditional", "conditional", required=True, type=FILE,
              help="Bundle: conditional boundary edits.")
@click.option("--e4e-linear", "e4e", required=True, type=FILE,
              help="Bundle: encoder without L_reg, linear transformers.")
@click.option("--times", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="name<TAB>seconds lines of the build, recorded in suite.json.")
def suite(out, vrfam, interfacegan, conditional, e4e, times):
    """Assemble a model suite: one bundle per editing method, sharing identical weight
    files, plus the demo face (vrfam_rt/suite.py).

    Example: vrfam-rt synth suite --out build/suite --vrfam runs/vrfam/bundle
    --interfacegan runs/ifg/bundle --interfacegan-conditional runs/ifgc/bundle
    --e4e-linear runs/e4e/bundle
    """
    from vrfam_rt.training.suite import write_suite

    notes = {}
    if times:
        steps = [line.split("\t") for line in times.read_text().splitlines() if line.strip()]
        notes["build_seconds"] = {name: int(sec) for name, sec in steps}
        notes["build_seconds_total"] = sum(notes["build_seconds"].values())
    bundles = {"vrfam": vrfam, "interfacegan": interfacegan,
               "interfacegan-conditional": conditional, "e4e-linear": e4e}
    write_suite(out, bundles, notes)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    click.echo(f"wrote {out} ({size / 2**20:.1f} MiB)")


@synth.command("demo-face")
@click.option("--suite", "suite_dir", type=FILE, required=True,
              help="Model suite whose faces/example.png and suite.json to rewrite (the "
              "shipped one, inside the installed package, only when named: "
              "vrfam_rt/assets/default).")
@click.option("--seed", default=7, show_default=True, help="Render seed of the candidates.")
@click.option("--tries", default=512, show_default=True, type=click.IntRange(1, 4096),
              help="Renders to choose from (those that smile or wear glasses are skipped).")
def demo_face(suite_dir, seed, tries):
    """Choose the suite's demo face by the judge's reading: the plain render whose
    Smiling +1.0 edit the judge reads as smiling most above its reconstruction.

    Example: vrfam-rt synth demo-face --suite build/suite
    """
    from vrfam_rt.suite import is_suite
    from vrfam_rt.training.suite import write_example

    if not is_suite(suite_dir):
        raise VrfamError(f"{suite_dir} is not a model suite (no suite.json)")
    entry = write_example(suite_dir, seed, tries)
    readings = ", ".join(f"{k} {v:.2f}" for k, v in entry["judge_smiling"].items())
    click.echo(f"wrote {suite_dir / entry['file']} (render {entry['render_index']} of seed "
               f"{seed}; judge P(Smiling): {readings})")


def _trained(section: dict) -> str:
    return f", trained in {section['train_seconds']:.0f} s" if "train_seconds" in section else ""


def format_report(report: dict) -> str:
    """Tables of an oracle report: per-attribute accuracy, identity verification, flips."""

    a, i, f = report["attributes"], report["identity"], report["flips"]
    rows = [{"attribute": name, **v} for name, v in a["attributes"].items()]
    rows.append({"attribute": "mean", "accuracy": a["mean_accuracy"]})
    flips = [{"attribute": name, **v} for name, v in f["attributes"].items()]
    return "\n".join([
        f"attribute oracle: {a['n']} held-out renders{_trained(a)}",
        table(rows, [("attribute", "attribute", ""), ("accuracy", "accuracy", ".3f"),
                      ("majority baseline", "majority", ".3f"),
                      ("positive rate", "positive_rate", ".3f")]),
        "",
        f"identity embedding: {i['people']} held-out people x 2 views{_trained(i)}",
        table([i], [("verification acc", "verification_accuracy", ".3f"),
                     ("threshold", "threshold", ".3f"), ("ROC AUC", "roc_auc", ".4f"),
                     ("rank-1", "rank1_identification", ".3f"),
                     ("cos same", "mean_cosine_same", ".3f"),
                     ("cos different", "mean_cosine_different", ".3f")]),
        "",
        f"ground-truth flips: {f['n']} held-out faces, one attribute flipped at a time",
        table(flips, [("flipped", "attribute", ""),
                       ("oracle reads flip", "flipped_accuracy", ".3f"),
                       ("oracle reads others", "others_accuracy", ".3f"),
                       ("cos to original", "mean_cosine", ".3f"),
                       ("same person", "same_person_rate", ".3f")])])


COMMANDS = (synth,)
