"""`vrfam-rt eval`: the paper's Table 1 metrics of a bundle on the synthetic faces."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vrfam_rt.errors import VrfamError

EVAL_SEED = 20261126      # a seed no training run draws its faces from


@click.command("eval")
@click.option("--bundle", "bundle_path", type=click.Path(path_type=Path),
              help="Bundle to evaluate (trained on the synthetic faces).")
@click.option("--config", type=click.Choice(["tiny"]),
              help="Evaluate a seeded random bundle instead (a dry run of the protocol).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random bundle.")
@click.option("--backend", default="eager", show_default=True,
              type=click.Choice(["eager", "ort", "trt"]))
@click.option("--precision", default="fp32", show_default=True,
              type=click.Choice(["fp32", "fp16", "bf16", "int8"]))
@click.option("--device", default="cpu", show_default=True)
@click.option("--samples", default=256, show_default=True, type=click.IntRange(2),
              help="Synthetic faces to encode and edit.")
@click.option("--attr", "attrs", multiple=True, help="Attributes to edit (default: all).")
@click.option("--alpha", "alphas", multiple=True, type=float,
              default=(-1.5, -1.0, 1.0, 1.5), show_default=True)
@click.option("--batch", default=64, show_default=True, type=click.IntRange(1))
@click.option("--threads", type=click.IntRange(1))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def eval_cmd(bundle_path, config, seed, backend, precision, device, samples, attrs, alphas,
             batch, threads, json_path):
    """Distortion, perception and editability FID, identity similarity and target /
    non-target attribute accuracy of a bundle's edits of synthetic faces.

    The faces come from the procedural renderer; features for FID, attribute readings
    and identity embeddings come from the oracles trained on its renders, which stand
    in for Inception, an attribute classifier and ArcFace (the output says so).

    Example: vrfam-rt eval --bundle runs/synth/bundle --samples 512 --json table1.json
    """
    import torch

    from vrfam_rt.benchmarks.evaluate import table1
    from vrfam_rt.cli import _bundle_from, _runtime, _table
    from vrfam_rt.training.oracle import load_oracles
    from vrfam_rt.training.render import render, sample_params

    if threads:
        torch.set_num_threads(threads)
    if not bundle_path and not config:
        raise VrfamError("give --bundle B (no default bundle ships yet) or --config tiny "
                         "for a dry run")
    bundle = _bundle_from(bundle_path, config, seed)
    names = tuple(bundle.attributes)
    for name in attrs:
        if name not in names:
            raise VrfamError(f"--attr {name}: this bundle edits {', '.join(names)}")
    targets = [names.index(a) for a in (attrs or names)]
    runner = _runtime(bundle, backend, precision, device, threads,
                      say=lambda msg: click.echo(msg, err=True))
    oracle, identity = (m.eval() for m in load_oracles())
    size = bundle.config.encoder.input_size
    inputs = render(sample_params(samples, seed=EVAL_SEED), size)

    def back(images):        # generator output at the input resolution, on the CPU
        images = images.float().cpu()
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                     antialias=True, align_corners=False)
        return images

    recon, edits = [], {(k, a): [] for k in targets for a in alphas}
    with click.progressbar(range(0, samples, batch), label="evaluating", file=sys.stderr) as bar:
        for start in bar:
            x = inputs[start:start + batch]
            with torch.no_grad():
                wplus = runner.encoder(x)
                recon.append(back(runner.generator(wplus)))
                for k, alpha in edits:
                    a = torch.zeros(len(x), len(names))
                    a[:, k] = alpha
                    edits[(k, alpha)].append(back(runner.generator(runner.transformer(wplus, a))))
    report = table1(inputs, torch.cat(recon), {key: torch.cat(v) for key, v in edits.items()},
                    oracle, identity)
    for row in report["per_edit"]:
        row["attribute"] = names[row["attribute"]]
    report.update({
        "bundle": str(bundle_path) if bundle_path else f"random {config}, seed {seed}",
        "backend": backend, "precision": precision, "samples": samples,
        "faces": f"procedural renders, seed {EVAL_SEED}, {size} px",
        "fid_features": "synthetic attribute oracle's features (stand-in for Inception)",
        "identity_model": "synthetic identity embedding (stand-in for ArcFace)"})
    rows = [{"metric": k, "value": report[k]} for k in (
        "distortion_l2", "perception_fid", "editability_fid", "identity_similarity",
        "target_accuracy", "non_target_accuracy")]
    click.echo(f"{report['bundle']} on {backend} {precision}, {samples} synthetic faces; "
               "FID on oracle features, identity by the synthetic embedding")
    click.echo(_table(rows, [("metric", "metric", ""), ("value", "value", ".4f")]))
    click.echo("")
    click.echo(_table(report["per_edit"], [
        ("attribute", "attribute", ""), ("alpha", "alpha", "+.1f"),
        ("target acc", "target_accuracy", ".3f"), ("non-target acc", "non_target_accuracy", ".3f"),
        ("identity", "identity_similarity", ".3f")]))
    if json_path:
        from vrfam_rt.fileio import write_text_atomic
        write_text_atomic(json_path, json.dumps(report, indent=2) + "\n")
