"""The `vrfam-rt` command line. Heavy libraries are imported inside the commands."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vrfam_rt.version import __version__
from vrfam_rt.engines.rtx import COMPUTE_CAPABILITIES as RTX_TARGETS
from vrfam_rt.errors import VrfamError


class Group(click.Group):
    """Turns VrfamError into one line on stderr and the error's exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VrfamError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vrfam-rt")
def main():
    """Fast facial attribute editing with VR-FAM on StyleGAN2."""


def run() -> None:
    """The process entry point (`vrfam-rt`, `python -m vrfam_rt`): process-wide settings,
    then the command line. Callers that invoke `main` inside their own process (tests,
    click's CliRunner) keep their process's settings."""
    from vrfam_rt.environment import keep_freed_memory

    keep_freed_memory()
    main(prog_name="vrfam-rt")


@main.command()
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the facts as JSON to this file.")
def info(json_path):
    """Versions, the backends usable here, and the devices.

    Example: vrfam-rt info --json info.json
    """
    from vrfam_rt import environment

    facts = environment.describe()
    for section in ("versions", "backends", "devices"):
        click.echo(f"{section}:")
        width = max(len(k) for k in facts[section]) if facts[section] else 0
        for key, value in facts[section].items():
            click.echo(f"  {key:<{width}}  {value}")
    if json_path:
        json_path.write_text(json.dumps(facts, indent=2) + "\n")


def _attr_file(ctx, param, values):
    pairs = {}
    for value in values:
        attr, sep, file = value.partition("=")
        if not sep or not attr or not file:
            raise click.BadParameter(f"{value!r} is not ATTR=FILE (e.g. Smiling=tnet_31.pth.tar)")
        if attr in pairs:
            raise click.BadParameter(f"attribute {attr} is given twice")
        pairs[attr] = Path(file)
    return pairs


FILE = click.Path(path_type=Path)


@main.command("import")
@click.option("--stylegan2", type=FILE, help="rosinality StyleGAN2 checkpoint (needs 'g_ema').")
@click.option("--e4e", type=FILE, help="e4e encoder checkpoint (its decoder serves as generator "
              "when --stylegan2 is not given).")
@click.option("--psp", type=FILE, help="pSp encoder checkpoint (same layout, pSp forward).")
@click.option("--classifier", type=FILE, help="latent classifier (latent_classifier_epoch_20.pth).")
@click.option("--transformer", "transformers", multiple=True, callback=_attr_file,
              metavar="ATTR=FILE", help="released latent transformer for a CelebA attribute, "
              "e.g. Smiling=tnet_31.pth.tar; repeatable.")
@click.option("--arcface", type=FILE, help="IR-SE50 ArcFace weights (model_ir_se50.pth).")
@click.option("--out", required=True, type=FILE, help="Bundle directory to write.")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
def import_(stylegan2, e4e, psp, classifier, transformers, arcface, out, force):
    """Public checkpoints -> a bundle.

    Example: vrfam-rt import --e4e e4e_ffhq_encode.pt --transformer Smiling=tnet_31.pth.tar
    --classifier latent_classifier_epoch_20.pth --out bundles/ffhq
    """
    from vrfam_rt.checkpoints import import_bundle

    if out.exists() and not force:
        raise VrfamError(f"{out} already exists; choose another --out or pass --force")
    bundle = import_bundle(stylegan2=stylegan2, e4e=e4e, psp=psp, classifier=classifier,
                           transformers=transformers, arcface=arcface)
    bundle.save(out, overwrite=force)
    g = bundle.config.generator
    click.echo(f"wrote {out}: generator {g.size}px ({g.n_latent}x{g.style_dim} W+), "
               f"components {', '.join(bundle.modules)}"
               + (f", attributes {', '.join(bundle.attributes)}" if bundle.attributes else ""))


def _csv(choices):
    def parse(ctx, param, value):
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise click.BadParameter(f"{bad[0] if bad else value!r} is not one of "
                                     f"{', '.join(choices)}")
        return tuple(dict.fromkeys(items))
    return parse


def _bundle_from(bundle_path, config, seed):
    """--bundle B (a bundle, or a model suite's vrfam member), --config C (seeded random),
    or neither: the shipped default bundle."""
    from vrfam_rt.bundle import Bundle
    from vrfam_rt.suite import resolve

    if bundle_path and config:
        raise click.UsageError("give one of --bundle B or --config C, not both")
    if config:
        return Bundle.random(config, seed=seed)
    return Bundle.load(resolve(bundle_path))


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table; columns are (header, key, format)."""
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        cells.append([("" if row.get(k) is None else format(row[k], f)) for _, k, f in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@main.command()
@click.option("--bundle", "bundle_path", type=FILE, help="Bundle directory to export "
              "[default: the shipped default bundle].")
@click.option("--config", type=click.Choice(["tiny", "ffhq-1024"]),
              help="Export a seeded random bundle of this config instead.")
@click.option("--seed", default=0, show_default=True, help="Seed for --config.")
@click.option("--out", required=True, type=FILE, help="Folder for fp32/, fp16/ ...")
@click.option("--precision", "precisions", default="fp32,fp16", show_default=True,
              callback=_csv(("fp32", "fp16")), help="Comma-separated precisions.")
@click.option("--components", default="encoder,transformer,generator", show_default=True,
              callback=_csv(("encoder", "transformer", "generator")))
@click.option("--max-batch", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="Largest batch the graphs accept (the batch axis is dynamic).")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(9, 20))
@click.option("--verify", is_flag=True,
              help="Compare every graph with eager PyTorch through ONNX Runtime (batch 1 and 3) "
              "and emulate FP16 on the CPU; print both tables.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write manifests and verification results as JSON.")
@click.option("--force", is_flag=True, help="Replace existing precision folders in --out.")
def export(bundle_path, config, seed, out, precisions, components, max_batch, opset, verify,
           json_path, force):
    """Bundle -> ONNX files (encoder, fused transformer, generator) per precision.

    Example: vrfam-rt export --config tiny --out onnx/tiny --verify
    """
    from vrfam_rt.export.lowering import check_export, export_bundle

    bundle = _bundle_from(bundle_path, config, seed)
    check_export(bundle, Path(out), precisions, components, max_batch, force)
    steps = len(precisions) * len(components)
    with click.progressbar(length=steps, label="exporting", file=sys.stderr,
                           item_show_func=lambda s: s) as bar:
        started = []

        def progress(step):  # called as each file starts; the bar counts finished files
            bar.update(1 if started else 0, step)
            started.append(step)

        manifests = export_bundle(bundle, out, precisions, components, opset=opset,
                                  max_batch=max_batch, overwrite=force, progress=progress)
        bar.update(1)
    rows = [{"precision": p, "component": c, "MB": e["bytes"] / 1e6,
             "seconds": e["export_seconds"], "fp32_nodes": len(e["fp32_nodes"])}
            for p, m in manifests.items() for c, e in m["files"].items()]
    click.echo(_table(rows, [("precision", "precision", ""), ("file", "component", ""),
                             ("MB", "MB", ".1f"), ("export s", "seconds", ".1f"),
                             ("fp32 nodes", "fp32_nodes", "d")]))
    click.echo(f"wrote {', '.join(str(Path(out) / p) for p in manifests)}")
    results = {"manifests": manifests}
    if verify:
        results |= _verify(bundle, out, manifests, components)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    if verify and not all(r.get("ok", True) for r in results["parity"]):
        raise VrfamError("parity check failed: an FP32 graph differs from eager PyTorch "
                         "beyond its limit (see the table)")


def _verify(bundle, out, manifests, components) -> dict:
    from vrfam_rt.export.fp16 import fp16_report
    from vrfam_rt.export.parity import parity

    rows = [r for p in manifests for r in parity(bundle, Path(out) / p)]
    for r in rows:
        r["verdict"] = {True: "ok", False: "FAIL"}.get(r.get("ok"), "")
    click.echo("\nparity: ONNX Runtime vs eager PyTorch")
    click.echo(_table(rows, [("precision", "precision", ""), ("file", "component", ""),
                             ("batch", "batch", "d"), ("max abs", "max_abs", ".2e"),
                             ("max rel", "max_rel", ".2e"), ("limit", "limit", ""),
                             ("", "verdict", "")]))
    emulated = fp16_report(bundle, components)
    fp16_rows = [{"component": c} | r for c, r in emulated.items()]
    click.echo("\nFP16 by emulation (float16 weights and activations) vs FP32, batch 2")
    click.echo(_table(fp16_rows, [("file", "component", ""), ("finite", "finite", ""),
                                  ("max abs", "max_abs", ".2e"), ("max rel", "max_rel", ".2e"),
                                  ("rel L2", "rel_l2", ".2e"), ("PSNR dB", "psnr_db", ".1f")]))
    return {"parity": rows, "fp16_emulation": emulated}


@main.command("build-engines")
@click.option("--onnx", "onnx_dir", required=True, type=FILE,
              help="One precision folder of `vrfam-rt export` (e.g. onnx/fp16).")
@click.option("--out", required=True, type=FILE, help="Folder for the plans and manifest.")
@click.option("--flavour", default="auto", show_default=True,
              type=click.Choice(["auto", "tensorrt", "rtx"]),
              help="tensorrt: TensorRT 10/11 on the local GPU; rtx: TensorRT-RTX, ahead of "
              "time, no GPU needed; auto: tensorrt when it and a GPU are here, else rtx.")
@click.option("--compute-capability", "compute_capabilities", multiple=True,
              type=click.Choice(RTX_TARGETS), help="TensorRT-RTX target GPU generation, "
              "repeatable (7.5 = RTX 2080 Ti) [default: all of them].")
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(1, 1024),
              help="Largest batch the plans accept.")
@click.option("--opt-batch", type=click.IntRange(1, 1024),
              help="Batch size the kernels are tuned for (default: --max-batch).")
@click.option("--workspace", default=8.0, show_default=True, type=click.FloatRange(min=0.0625),
              help="Builder workspace (scratch memory) limit in GiB.")
@click.option("--opt-level", default=3, show_default=True, type=click.IntRange(0, 5),
              help="TensorRT builder optimization level.")
@click.option("--timing-cache", type=FILE, help="Timing cache file (default: OUT/timing.cache; "
              "TensorRT only).")
@click.option("--refittable", is_flag=True, help="Build plans whose weights can be refitted.")
def build_engines_cmd(onnx_dir, out, flavour, compute_capabilities, max_batch, opt_batch,
                      workspace, opt_level, timing_cache, refittable):
    """ONNX -> TensorRT or TensorRT-RTX plans (strongly typed, dynamic batch, cached).

    Example: vrfam-rt build-engines --onnx onnx/ffhq/fp16 --out engines/ffhq-fp16
    --flavour rtx --compute-capability 7.5
    """
    from vrfam_rt.engines.build import BuildOptions, build_engines, choose_target

    options = BuildOptions(workspace_gib=workspace, opt_level=opt_level, refittable=refittable)
    target = choose_target(flavour, compute_capabilities)   # one line when nothing can build
    click.echo(f"building with {target.describe()}", err=True)

    def progress(component, cached):
        click.echo(f"{component}: {'cached plan reused' if cached else 'building'}", err=True)

    manifest = build_engines(onnx_dir, out, max_batch, opt_batch, options, timing_cache,
                             target=target, progress=progress)
    rows = [{"file": e["plan"], "MB": e["bytes"] / 1e6, "s": e["build_seconds"]}
            for e in manifest["files"].values()]
    click.echo(_table(rows, [("plan", "file", ""), ("MB", "MB", ".1f"),
                             ("build s", "s", ".1f")]))
    click.echo(f"wrote {out}: {target.describe()}")


@main.command()
@click.option("--bundle", "bundle_path", type=FILE, help="Bundle directory to calibrate "
              "[default: the shipped default bundle].")
@click.option("--config", type=click.Choice(["tiny", "ffhq-1024"]),
              help="Calibrate a seeded random bundle of this config instead.")
@click.option("--seed", default=0, show_default=True, help="Seed for --config and --samples.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of calibration photos (preprocessed as for editing).")
@click.option("--samples", type=click.IntRange(1, 100000),
              help="Calibrate on N samples of the bundle's generator instead.")
@click.option("--out", required=True, type=FILE, help="Folder for int8-<target>/.")
@click.option("--components", default="encoder", show_default=True,
              callback=_csv(("encoder", "generator")))
@click.option("--method", default="entropy", show_default=True,
              type=click.Choice(["entropy", "max"]), help="Activation range calibration.")
@click.option("--target", default="trt", show_default=True, type=click.Choice(["trt", "cpu"]),
              help="trt: symmetric int8 Q/DQ for engines; cpu: u8 x s8 for ONNX Runtime.")
@click.option("--eval-samples", default=4, show_default=True, type=click.IntRange(1, 1024),
              help="Held-out generator samples for the INT8 vs FP32 figures.")
@click.option("--force", is_flag=True, help="Replace an existing int8-<target>/ folder.")
def calibrate(bundle_path, config, seed, images, samples, out, components, method, target,
              eval_samples, force):
    """INT8 Q/DQ ONNX from calibration images, with accuracy and CPU speed vs FP32.

    Example: vrfam-rt calibrate --config tiny --samples 32 --out onnx/tiny --target cpu
    """
    from vrfam_rt.calibration.calibrate import calibrate as run_calibration

    if (images is None) == (samples is None):
        raise click.UsageError("give exactly one of --images DIR or --samples N")
    bundle = _bundle_from(bundle_path, config, seed)
    manifest = run_calibration(bundle, out, components, target, method, images, samples, seed,
                               eval_samples, force,
                               progress=lambda step: click.echo(f"{step} ...", err=True))
    rows = [{"component": c} | r for c, r in manifest["metrics"].items() if isinstance(r, dict)]
    click.echo(f"INT8 ({target} target, {method} calibration) vs FP32 through ONNX Runtime, "
               f"{eval_samples} held-out samples")
    click.echo(_table(rows, [("file", "component", ""), ("W+ rel err", "wplus_rel_err", ".3f"),
                             ("PSNR dB", "image_psnr_db", ".1f"),
                             ("attr agree", "attribute_agreement", ".3f"),
                             ("fp32 ms", "fp32_ms", ".0f"), ("int8 ms", "int8_ms", ".0f"),
                             ("speedup", "speedup", ".2f")]))
    click.echo(f"wrote {Path(out) / f'int8-{target}'}")


BENCH_PRECISIONS = {"eager": ("fp32", "bf16", "fp16"), "ort": ("fp32", "fp16", "int8"),
                    "trt": ("fp16", "int8")}


@main.command()
@click.option("--bundle", "bundle_path", type=FILE, help="Bundle directory to benchmark "
              "[default: the shipped default bundle].")
@click.option("--config", type=click.Choice(["tiny", "ffhq-1024"]),
              help="Benchmark a seeded random bundle of this config instead.")
@click.option("--seed", default=0, show_default=True)
@click.option("--backend", "backends", multiple=True, default=("eager",), show_default=True,
              type=click.Choice(["eager", "ort", "trt"]), help="Repeatable.")
@click.option("--precision", "precisions", multiple=True, default=("fp32",), show_default=True,
              type=click.Choice(["fp32", "fp16", "bf16", "int8"]),
              help="Repeatable; each backend runs the precisions it supports.")
@click.option("--batch", "batches", multiple=True, default=(1,), show_default=True,
              type=click.IntRange(1, 1024), help="Repeatable.")
@click.option("--iters", default=5, show_default=True, type=click.IntRange(1))
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(0))
@click.option("--threads", type=click.IntRange(1), help="CPU threads for torch and ONNX Runtime.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N] (eager, ort).")
@click.option("--onnx", "onnx_root", type=FILE,
              help="Export root with fp32/, fp16/, int8-cpu/ (default: export fp32/fp16 now).")
@click.option("--engines", "engine_dir", type=FILE, help="Plan folder for --backend trt "
              "[default: build fp16/int8 plans of the bundle into the cache].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG of end-to-end latency by backend and batch.")
def bench(bundle_path, config, seed, backends, precisions, batches, iters, warmup, threads,
          device, onnx_root, engine_dir, json_path, plot_path):
    """Latency/throughput of encoder, transformer, generator and end to end, vs eager FP32.

    Example: vrfam-rt bench --config tiny --backend eager --backend ort --precision fp32
    --precision bf16 --batch 1 --batch 4 --json bench.json
    """
    import tempfile

    import torch

    from vrfam_rt.backends import open_backend
    from vrfam_rt.benchmarks.bench import (Config, eager_configs, flops_per_image, ort_configs,
                                           plot_png, run_bench)

    if threads:
        torch.set_num_threads(threads)
    if "trt" in backends and device == "cpu":
        device = "cuda"                       # TensorRT runs on the GPU; so does the baseline
    bundle = _bundle_from(bundle_path, config, seed)
    trt = []                                  # plans first: without a GPU, stop after building
    if "trt" in backends and engine_dir:
        trt = [open_backend("trt", engine_dir=engine_dir, device="cuda")]
    elif "trt" in backends:
        wanted = dict.fromkeys("fp16" if p == "fp32" else p for p in precisions)
        trt = [_runtime(bundle, "trt", p, "cuda", threads)
               for p in wanted if p in BENCH_PRECISIONS["trt"]]
    eager = [p for p in precisions if "eager" in backends and p in BENCH_PRECISIONS["eager"]]
    configs = eager_configs(bundle, ["fp32"] + [p for p in eager if p != "fp32"], device)
    flops = flops_per_image(bundle)
    with tempfile.TemporaryDirectory(prefix="vrfam-bench-") as scratch:
        if "ort" in backends:
            configs += ort_configs(bundle, [p for p in precisions if p in BENCH_PRECISIONS["ort"]],
                                   onnx_root, Path(scratch), device, threads,
                                   say=lambda msg: click.echo(msg, err=True))
        configs += [Config("trt", runner.precision, runner) for runner in trt]
        rows = run_bench(bundle, configs, batches, iters, warmup, device, flops=flops,
                         progress=lambda b, i, n: click.echo(f"batch {b}: {i}/{n}", err=True))
    click.echo(_table(rows, [("backend", "backend", ""), ("precision", "precision", ""),
                             ("batch", "batch", "d"), ("stage", "stage", ""),
                             ("p50 ms", "p50_ms", ".1f"), ("p90 ms", "p90_ms", ".1f"),
                             ("p99 ms", "p99_ms", ".1f"), ("img/s", "images_per_s", ".2f"),
                             ("GFLOP/s", "gflops", ".1f"), ("vs eager", "speedup_vs_eager", ".2f")]))
    if json_path:
        from vrfam_rt.environment import describe

        facts = describe()
        result = {"config": bundle.config.name, "device": _device_name(device, facts),
                  "flops_per_image": flops, "threads": torch.get_num_threads(),
                  "iters": iters, "warmup": warmup, "runs": rows}
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if plot_path:
        plot_png(rows, plot_path)


def _device_name(device: str, facts: dict) -> str:
    key = "cuda:0" if device == "cuda" else device
    return facts["devices"].get(key, device)


@main.command("gpu-check")
@click.option("--out", default="gpu-check", show_default=True, type=FILE,
              help="Folder for gpu-check.json, gpu-check.txt, ONNX files and plans.")
@click.option("--config", default="ffhq-1024", show_default=True,
              type=click.Choice(["tiny", "ffhq-1024"]))
@click.option("--device", default="cuda", show_default=True,
              help="cuda on a GPU machine; cpu runs the same steps as a dry run.")
@click.option("--batch", "batches", multiple=True, default=(1, 8), show_default=True,
              type=click.IntRange(1, 1024))
@click.option("--iters", default=5, show_default=True, type=click.IntRange(1))
@click.option("--no-export", is_flag=True, help="Skip the ONNX export (and ORT, TensorRT).")
def gpu_check_cmd(out, config, device, batches, iters, no_export):
    """Info, export, FP16 engines, backend parity and benchmark on an NVIDIA GPU.

    Example (no install needed): PYTHONPATH=. python3 -m vrfam_rt gpu-check --out gpu
    """
    import torch

    from vrfam_rt.benchmarks.gpu_check import gpu_check
    from vrfam_rt.errors import MissingDependency

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingDependency("gpu-check needs an NVIDIA GPU and torch sees none; "
                                "use --device cpu for a dry run")
    report = gpu_check(out, config, device, batches, iters,
                       say=lambda msg: click.echo(msg, err=True), export=not no_export)
    click.echo((Path(out) / "gpu-check.txt").read_text(), nl=False)
    if any(s["status"].startswith("failed") for s in report["steps"].values()):
        raise VrfamError(f"a gpu-check step failed; see {Path(out) / 'gpu-check.json'}")


def _cache_root() -> Path | None:
    """The cache root the user chose: $VRFAM_RT_CACHE, else $XDG_CACHE_HOME/vrfam-rt, else
    None (the runtime's default, ~/.cache/vrfam-rt)."""
    import os

    if os.environ.get("VRFAM_RT_CACHE"):
        return Path(os.environ["VRFAM_RT_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "vrfam-rt"
    return None


def _runtime(bundle, backend, precision, device, threads, cuda_graphs=False):
    """The runtime's backend for a CLI command: the cache root from the environment,
    progress on stderr."""
    from vrfam_rt.runtime import open_runtime

    return open_runtime(bundle, backend, precision, device, threads, _cache_root(),
                        cuda_graphs=cuda_graphs, say=lambda msg: click.echo(msg, err=True))


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--attr", "attrs", multiple=True, metavar="NAME[=ALPHA]",
              help="Attribute and strength (default 1.0); repeat to edit one after another.")
@click.option("--alpha-sweep", metavar="START:STOP:N",
              help="Render N strengths from START to STOP for the given attributes.")
@click.option("--backend", default="eager", show_default=True,
              type=click.Choice(["eager", "ort", "trt"]))
@click.option("--precision", default="fp32", show_default=True,
              type=click.Choice(["fp32", "fp16", "bf16", "int8"]))
@click.option("--bundle", "bundle_path", type=FILE, help="Bundle directory [default: the shipped "
              "default bundle].")
@click.option("--config", type=click.Choice(["tiny", "ffhq-1024"]),
              help="Use a seeded random bundle of this config (for trying the pipeline).")
@click.option("--seed", default=0, show_default=True)
@click.option("--batch", default=4, show_default=True, type=click.IntRange(1, 1024))
@click.option("--out", default="edits", show_default=True, type=FILE)
@click.option("--grid", is_flag=True, help="Also write input | reconstruction | edits per input.")
@click.option("--no-align", is_flag=True, help="Skip face alignment (inputs are face crops).")
@click.option("--force", is_flag=True, help="Allow alphas outside [-1.5, 1.5].")
@click.option("--device", default="cpu", show_default=True)
@click.option("--cuda-graphs", is_flag=True,
              help="Eager on CUDA: replay each stage as a CUDA graph (about 2x at batch 1).")
@click.option("--threads", type=click.IntRange(1))
def edit(inputs, attrs, alpha_sweep, backend, precision, bundle_path, config, seed, batch, out,
         grid, no_align, force, device, cuda_graphs, threads):
    """Edit facial attributes of photos (files or folders).

    Example: vrfam-rt edit photo.jpg --bundle bundles/ffhq --attr Smiling=1.0 --grid
    """
    import torch

    from vrfam_rt.images import expand_inputs, save_png, to_pil
    from vrfam_rt.pipeline import EditPipeline, parse_edits

    if threads:
        torch.set_num_threads(threads)
    bundle = _bundle_from(bundle_path, config, seed)
    edits = parse_edits(list(attrs), bundle.attributes, alpha_sweep, force)
    files = expand_inputs(inputs)
    pipeline = EditPipeline.from_bundle(bundle, backend, precision, device, _cache_root(),
                                        max_batch=batch, threads=threads, align=not no_align,
                                        cuda_graphs=cuda_graphs,
                                        say=lambda msg: click.echo(msg, err=True))
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


@main.command()
@click.option("--bundle", "bundle_path", type=FILE, help="Bundle directory to profile "
              "[default: the shipped default bundle].")
@click.option("--config", type=click.Choice(["tiny", "ffhq-1024"]),
              help="Profile a seeded random bundle of this config instead.")
@click.option("--seed", default=0, show_default=True)
@click.option("--backend", default="eager", show_default=True,
              type=click.Choice(["eager", "ort", "trt"]))
@click.option("--precision", default="fp32", show_default=True,
              type=click.Choice(["fp32", "fp16", "bf16", "int8"]))
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 1024))
@click.option("--iters", default=3, show_default=True, type=click.IntRange(1))
@click.option("--top", default=8, show_default=True, type=click.IntRange(1),
              help="Slowest layers listed per stage.")
@click.option("--threads", type=click.IntRange(1))
@click.option("--device", default="cpu", show_default=True)
@click.option("--roofline", type=click.Choice(["rtx-2080-ti", "h100", "h200"]),
              help="Run nothing: FLOPs, bytes and the roofline lower bound of every stage and "
              "layer on this GPU, from the exported ONNX (--precision fp16 or fp32).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def profile(bundle_path, config, seed, backend, precision, batch, iters, top, threads, device,
            roofline, json_path):
    """Per-stage and per-layer time of one edit, with the fraction of the device's peak.

    Example: vrfam-rt profile --config ffhq-1024 --backend ort --threads 2;
    vrfam-rt profile --config ffhq-1024 --roofline rtx-2080-ti --precision fp16
    """
    import torch

    from vrfam_rt.benchmarks import profile as prof
    from vrfam_rt.benchmarks.bench import Config, flops_per_image, run_bench

    if threads:
        torch.set_num_threads(threads)
    bundle = _bundle_from(bundle_path, config, seed)
    if roofline:
        _roofline(bundle, roofline, precision, batch, top, json_path)
        return
    runner = _runtime(bundle, backend, precision, device, threads)
    device = str(getattr(runner, "device", device))
    flops = flops_per_image(bundle)
    stages = run_bench(bundle, [Config(backend, precision, runner)], (batch,), iters, 1, device,
                       flops=flops)
    layers = {"eager": prof.eager_layers, "ort": prof.ort_layers,
              "trt": prof.trt_layers}[backend](bundle, runner, batch)
    peaks = _peaks(device, precision, prof)
    peak = peaks[0]["gflops"]
    for row in stages:
        row["peak_fraction"] = row["gflops"] / peak
    click.echo(f"{backend} {precision}, batch {batch}, device {device}")
    click.echo(_table(stages, [("stage", "stage", ""), ("p50 ms", "p50_ms", ".1f"),
                               ("GFLOP/s", "gflops", ".1f"),
                               (f"of {peaks[0]['device']} peak", "peak_fraction", ".1%")]))
    rows = prof.top_layers(layers, top)
    click.echo(f"\nslowest {top} layers per stage")
    click.echo(_table(rows, [("stage", "stage", ""), ("layer", "layer", ""),
                             ("ms", "ms", ".2f"), ("share", "share", ".1%")]))
    click.echo("\ndevice peaks (dense GFLOP/s)")
    click.echo(_table(peaks, [("device", "device", ""), ("precision", "precision", ""),
                              ("GFLOP/s", "gflops", ".0f"), ("source", "source", "")]))
    if json_path:
        json_path.write_text(json.dumps({"backend": backend, "precision": precision,
                                         "batch": batch, "device": device, "stages": stages,
                                         "layers": layers, "peaks": peaks}, indent=2) + "\n")


def _roofline(bundle, gpu: str, precision: str, batch: int, top: int, json_path) -> None:
    """`profile --roofline`: bounds from the bundle's exported graphs (exported once)."""
    from vrfam_rt.benchmarks.roofline import roofline
    from vrfam_rt.runtime import cache_dir, exported

    if precision not in ("fp32", "fp16"):
        raise VrfamError(f"--roofline takes --precision fp16 or fp32, not {precision}")
    graphs = exported(bundle, cache_dir(bundle, _cache_root()), precision,
                      say=lambda msg: click.echo(msg, err=True))
    report = roofline(graphs, gpu, batch)
    click.echo(f"roofline lower bounds on {report['gpu']}, {precision}, batch {batch} "
               "(from the ONNX graphs; not a measurement)")
    click.echo(_table(report["stages"], [
        ("stage", "stage", ""), ("GFLOP", "gflop", ".1f"), ("weights MB", "weight_mb", ".1f"),
        ("unfused act. MB", "unfused_activation_mb", ".0f"), ("bound ms", "bound_ms", ".3f"),
        ("bound by", "bound_by", "")]))
    for stage in ("encoder", "transformer", "generator"):
        rows = sorted((l for l in report["layers"] if l["stage"] == stage),
                      key=lambda l: -l["bound_ms"])[:top]
        for row in rows:
            row["gflop"], row["bound_us"] = row["flops"] / 1e9, row["bound_ms"] * 1e3
        click.echo(f"\n{stage}: {top} layers with the largest bound")
        click.echo(_table(rows, [("layer", "layer", ""), ("op", "op", ""),
                                 ("GFLOP", "gflop", ".2f"), ("bound us", "bound_us", ".1f")]))
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")


def _peaks(device: str, precision: str, prof) -> list[dict]:
    """This device's peak first (measured for a CPU), then the published GPU peaks."""
    import torch

    key = "fp16" if precision in ("fp16", "bf16", "int8") else "fp32"
    rows = []
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        if name in prof.DEVICE_PEAKS:
            rows.append({"device": name, "precision": key,
                         "gflops": prof.DEVICE_PEAKS[name][key], "source": "published"})
    if not rows:
        rows.append({"device": "this CPU", "precision": "fp32",
                     "gflops": prof.measure_cpu_peak(), "source": "measured: 2048^3 matmul"})
    rows += [{"device": name, "precision": p, "gflops": v, "source": "published"}
             for name, peaks in prof.DEVICE_PEAKS.items() for p, v in peaks.items()]
    return rows


# Command groups that live in their own modules, registered last.
from vrfam_rt.eval_cli import eval_cmd  # noqa: E402
from vrfam_rt.synth_cli import synth  # noqa: E402
from vrfam_rt.train_cli import train  # noqa: E402

main.add_command(eval_cmd)
main.add_command(synth)
main.add_command(train)
