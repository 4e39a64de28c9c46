"""Quality gates of the CPU paths: is each one the same picture as eager FP32?

    python -m vrfam_rt.benchmarks.cpu_quality --out benchmarks/results [--samples 256]

1. Generator fidelity on random ffhq-1024 weights (seed 0): PSNR of each path's image
   against eager FP32's for held-out W+ (generator samples of seed 1; INT8 calibrates on
   seed 0). Gates: bf16 >= 40 dB, int8 >= 35 dB (fp32 paths: the same computation).
2. Edits on the shipped default bundle: `vrfam-rt eval` per path (same faces, same
   alphas). Gates: mean target accuracy within 0.02 and perception FID within 10% of
   eager FP32's.

Writes cpu-quality-<cpu>.md and .json into --out (<cpu> from the CPU model and its
widest kernels, e.g. xeon-amx, epyc-avx2). Every path is opened through the runtime
(`open_runtime`), so graphs are exported and INT8 calibrated into the cache on demand.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import torch

from vrfam_rt.benchmarks.bench import BASELINE

PATHS = (("eager", "bf16"), ("ort", "fp32"), ("ort", "int8"), ("openvino", "fp32"),
         ("openvino", "bf16"), ("openvino", "int8"))
PSNR_GATES = {"bf16": 40.0, "int8": 35.0}
ACCURACY_GATE = 0.02        # |target accuracy - eager fp32's|
FID_GATE = 0.10             # perception FID within 10% of eager fp32's


def cpu_label(cpu: dict) -> str:
    """A short name for result files: the model's family word and its widest kernels."""
    words = re.findall(r"[a-z]+", cpu["model"].lower())
    family = next((w for w in words if w in ("xeon", "epyc", "ryzen", "core")), words[0] if words else "cpu")
    flags = set(cpu["flags"])
    kind = ("amx" if "amx_int8" in flags else "avx512" if "avx512f" in flags
            else "avx2" if "avx2" in flags else "sse")
    return f"{family}-{kind}"


def generator_fidelity(samples: int, say) -> list[dict]:
    from vrfam_rt import Bundle
    from vrfam_rt.backends.eager import EagerBackend
    from vrfam_rt.calibration.data import generator_samples
    from vrfam_rt.export.parity import psnr
    from vrfam_rt.on_demand import open_runtime

    bundle = Bundle.random("ffhq-1024", seed=0)
    _, wplus = generator_samples(bundle, samples, seed=1, batch=1)
    eager = EagerBackend(bundle)
    with torch.no_grad():
        reference = [eager.generator(w[None]) for w in wplus]
    rows = []
    for backend, precision in PATHS:
        say(f"ffhq-1024 generator: {backend} {precision} ...")
        runner = open_runtime(bundle, backend, precision, "cpu", say=say)
        with torch.no_grad():
            images = [runner.generator(w[None]) for w in wplus]
        value = psnr(torch.cat(reference), torch.cat(images))
        gate = PSNR_GATES.get(runner.precision)
        rows.append({"backend": backend, "precision": runner.precision, "psnr_db": value,
                     "gate_db": gate, "passed": None if gate is None else value >= gate})
    return rows


def edit_quality(samples: int, alphas: str, say) -> list[dict]:
    from click.testing import CliRunner

    from vrfam_rt.cli import main

    reports = {}
    for backend, precision in (BASELINE, *PATHS):
        say(f"default bundle eval: {backend} {precision} ...")
        path = Path(f"/tmp/vrfam-cpu-quality-{backend}-{precision}.json")
        result = CliRunner().invoke(main, ["eval", "--backend", backend, "--precision", precision,
                                           "--samples", str(samples), "--alpha", alphas,
                                           "--json", str(path)])
        if result.exit_code != 0:
            raise click.ClickException(f"eval {backend} {precision}: {result.output[-500:]}")
        reports[(backend, precision)] = json.loads(path.read_text())
        path.unlink()
    base = reports[BASELINE]
    rows = []
    for (backend, precision), r in reports.items():
        d_acc = r["target_accuracy"] - base["target_accuracy"]
        d_fid = r["perception_fid"] / base["perception_fid"] - 1
        first = (backend, precision) == BASELINE
        rows.append({"backend": backend, "precision": r["precision"],
                     "target_accuracy": r["target_accuracy"],
                     "non_target_accuracy": r["non_target_accuracy"],
                     "perception_fid": r["perception_fid"], "editability_fid": r["editability_fid"],
                     "distortion_l2": r["distortion_l2"], "delta_target_accuracy": d_acc,
                     "perception_fid_change": d_fid,
                     "passed": None if first else abs(d_acc) <= ACCURACY_GATE and abs(d_fid) <= FID_GATE})
    return rows


def _yes(passed) -> str:
    return "-" if passed is None else "yes" if passed else "**no**"


def markdown(report: dict) -> str:
    cpu = report["cpu"]
    lines = [f"# CPU paths: quality against eager FP32 ({report['label']})", "",
             f"CPU: {cpu['model']}, {cpu['cores']} cores, flags: {', '.join(cpu['flags'])}.",
             f"Command: `{report['command']}`", "",
             "## Generator, random ffhq-1024 weights (seed 0), "
             f"{report['generator_samples']} held-out W+", "",
             "| path | PSNR vs eager fp32 | gate | passed |", "| --- | --- | --- | --- |"]
    for r in report["generator"]:
        gate = f">= {r['gate_db']:.0f} dB" if r["gate_db"] else "-"
        lines.append(f"| {r['backend']} {r['precision']} | {r['psnr_db']:.1f} dB | {gate} | "
                     f"{_yes(r['passed'])} |")
    lines += ["", f"## Edits on the default bundle: `vrfam-rt eval --samples {report['eval_samples']}"
              f" --alpha {report['alphas']}`", "",
              "| path | target acc. | Δ vs eager | non-target | perception FID | Δ | "
              "editability FID | distortion | passed |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["edits"]:
        lines.append(f"| {r['backend']} {r['precision']} | {r['target_accuracy']:.3f} | "
                     f"{r['delta_target_accuracy']:+.3f} | {r['non_target_accuracy']:.3f} | "
                     f"{r['perception_fid']:.3f} | {r['perception_fid_change']:+.1%} | "
                     f"{r['editability_fid']:.3f} | {r['distortion_l2']:.4f} | {_yes(r['passed'])} |")
    lines += ["", f"Gates: generator PSNR >= 40 dB (bf16), >= 35 dB (int8); target accuracy "
              f"within {ACCURACY_GATE} and perception FID within {FID_GATE:.0%} of eager fp32."]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--out", default="benchmarks/results", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--generator-samples", default=4, show_default=True, type=click.IntRange(1))
@click.option("--samples", default=256, show_default=True, type=click.IntRange(2),
              help="Faces per eval.")
@click.option("--alpha", "alphas", default="1,-1", show_default=True)
def main(out, generator_samples, samples, alphas):
    from vrfam_rt.environment import cpu_model, keep_freed_memory
    from vrfam_rt.fileio import write_json_atomic, write_text_atomic

    keep_freed_memory()
    say = lambda message: click.echo(message, err=True)       # noqa: E731
    cpu = cpu_model()
    report = {"cpu": cpu, "label": cpu_label(cpu), "threads": torch.get_num_threads(),
              "command": "python -m vrfam_rt.benchmarks.cpu_quality " + " ".join(sys.argv[1:]),
              "generator_samples": generator_samples, "eval_samples": samples, "alphas": alphas}
    report["generator"] = generator_fidelity(generator_samples, say)
    report["edits"] = edit_quality(samples, alphas, say)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"cpu-quality-{report['label']}"
    write_json_atomic(stem.with_suffix(".json"), report)
    write_text_atomic(stem.with_suffix(".md"), markdown(report))
    click.echo(markdown(report))


if __name__ == "__main__":
    main()
