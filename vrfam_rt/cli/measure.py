"""The measuring commands: `bench` (latency vs eager FP32), `profile` (stages, layers, roofline), `gpu-check`."""
from __future__ import annotations

from pathlib import Path

import click

from vrfam_rt.backends import registry
from vrfam_rt.cli.common import (CONFIGS, DEVICE, FILE, ONNX_HELP, OUT_DIR, OUT_FILE,
                                 bundle_from, bundle_options, device_options, json_option,
                                 many_option, onnx_folders, open_runtime, runtime_options, say,
                                 set_threads, table, write_json)
from vrfam_rt.errors import UsageError, VrfamError


@click.command()
@bundle_options("benchmark")
@many_option("--backend", "backends", registry.CHOICES, (registry.AUTO,),
             "Backends to time beside the eager fp32 baseline (auto: the one `edit` runs "
             "by default here).")
@many_option("--precision", "precisions", registry.PRECISIONS, ("fp32",),
             "Each backend runs those it supports: " + "; ".join(
                 f"{s.name} {s.describe_precisions()}" for s in registry.SPECS.values()) + ".")
@many_option("--batch", "batches", None, (1,), "Batch sizes.", convert=int, low=1, high=1024)
@click.option("--iters", default=11, show_default=True, type=click.IntRange(1),
              help="Timed edits per configuration and batch (interleaved; the p50 of 11 "
              "moves little when a few runs are slowed by other work).")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(0),
              help="Untimed edits before them (the first compiles, the second settles "
              "caches and allocators).")
@device_options()
@click.option("--onnx", "onnx_path", type=FILE,
              help=f"Graphs for --backend ort and openvino: {ONNX_HELP} [default: the "
              "bundle's graphs, exported (and for int8 calibrated) once into the cache].")
@click.option("--engines", "engine_dir", type=FILE, help="Plan folder for --backend trt "
              "[default: build fp16/int8 plans of the bundle into the cache].")
@json_option()
@click.option("--plot", "plot_path", type=OUT_FILE,
              help="PNG of end-to-end latency by backend and batch.")
def bench(bundle_path, method, config, seed, backends, precisions, batches, iters, warmup, threads,
          device, onnx_path, engine_dir, json_path, plot_path):
    """Latency/throughput of encoder, transformer, generator and end to end, vs eager FP32.

    Each path's p50 is also given as a multiple of the FP32 floor: the edit's FLOPs at
    this machine's FP32 peak, measured (matmul and convolution, same threads) just before.

    Example: vrfam-rt bench --config ffhq-1024 --backend eager,openvino --precision
    fp32,bf16,int8 --batch 1,4 --json bench.json
    """
    import torch

    from vrfam_rt.benchmarks.bench import (add_floor, configurations, flops_per_image,
                                           measure_fp32_peak, noisy, plot_png, run_bench)

    set_threads(threads)
    backends = [registry.pick(device)[0].name if b == registry.AUTO else b for b in backends]
    device = device or registry.default_device(backends)   # the baseline runs beside them
    bundle = bundle_from(bundle_path, config, seed, method)
    flops = flops_per_image(bundle)
    configs = configurations(bundle, backends, precisions, device, threads,
                             onnx_folders(onnx_path) if onnx_path else None,
                             f"--onnx {onnx_path}", engine_dir, say)
    peak = measure_fp32_peak() if device == "cpu" else None
    rows = run_bench(bundle, configs, batches, iters, warmup, device, flops=flops,
                     progress=lambda b, i, n: say(f"batch {b}: {i}/{n}"))
    columns = [("backend", "backend", ""), ("precision", "precision", ""),
               ("batch", "batch", "d"), ("stage", "stage", ""), ("p50 ms", "p50_ms", ".1f"),
               ("p90 ms", "p90_ms", ".1f"), ("p99 ms", "p99_ms", ".1f"),
               ("img/s", "images_per_s", ".2f"), ("GFLOP/s", "gflops", ".1f"),
               ("vs eager", "speedup_vs_eager", ".2f")]
    if peak:
        add_floor(rows, flops, peak["gflops"])
        columns.append(("x floor", "x_floor", ".2f"))
        floor_ms = flops["total"] / (peak["gflops"] * 1e9) * 1e3
        click.echo(f"FP32 floor: {flops['total'] / 1e9:.1f} GFLOP per image at "
                   f"{peak['gflops']:.0f} GFLOP/s ({peak['kernel']}, {peak['threads']} threads, "
                   f"measured now) = {floor_ms:.1f} ms per image")
    click.echo(table(rows, columns))
    for warning in noisy(rows):
        click.echo(warning, err=True)
    if json_path:
        from vrfam_rt.environment import cpu_model, describe

        facts = describe()
        result = {"config": bundle.config.name, "device": _device_name(device, facts),
                  "cpu": cpu_model(), "flops_per_image": flops,
                  "threads": torch.get_num_threads(), "fp32_peak": peak,
                  "iters": iters, "warmup": warmup, "runs": rows}
        write_json(json_path, result)
    if plot_path:
        plot_png(rows, plot_path)


def _device_name(device: str, facts: dict) -> str:
    key = "cuda:0" if device == "cuda" else device
    return facts["devices"].get(key, device)


@click.command("gpu-check")
@click.option("--out", default="gpu-check", show_default=True, type=OUT_DIR,
              help="Folder for gpu-check.json, gpu-check.txt, ONNX files and plans.")
@click.option("--config", default="ffhq-1024", show_default=True, type=click.Choice(CONFIGS),
              help="Random-weight bundle to check (tiny: a quick dry run).")
@click.option("--device", default="cuda", show_default=True, type=DEVICE,
              metavar="cpu|cuda[:N]",
              help="cuda on a GPU machine; cpu runs the same steps as a dry run.")
@many_option("--batch", "batches", None, (1, 8), "Batch sizes to time.", convert=int, low=1,
             high=1024)
@click.option("--iters", default=5, show_default=True, type=click.IntRange(1),
              help="Timed edits per configuration and batch.")
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
                       say=say, export=not no_export)
    click.echo((Path(out) / "gpu-check.txt").read_text(), nl=False)
    if any(s["status"].startswith("failed") for s in report["steps"].values()):
        raise VrfamError(f"a gpu-check step failed; see {Path(out) / 'gpu-check.json'}")


@click.command()
@bundle_options("profile")
@runtime_options()
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1, 1024),
              help="Images per profiled edit.")
@click.option("--iters", default=3, show_default=True, type=click.IntRange(1),
              help="Profiled edits (after one warm-up).")
@click.option("--top", default=8, show_default=True, type=click.IntRange(1),
              help="Slowest layers listed per stage.")
@click.option("--roofline", type=click.Choice(["rtx-2080-ti", "h100", "h200"]),
              help="Run nothing: FLOPs, bytes and the roofline lower bound of every stage and "
              "layer on this GPU, from the exported ONNX (--precision fp16 or fp32).")
@json_option()
def profile(bundle_path, method, config, seed, backend, precision, batch, iters, top, threads, device,
            roofline, json_path):
    """Per-stage and per-layer time of one edit, with the fraction of the device's peak.

    Example: vrfam-rt profile --config ffhq-1024 --backend ort --threads 2;
    vrfam-rt profile --config ffhq-1024 --roofline rtx-2080-ti --precision fp16
    """
    from vrfam_rt.benchmarks import profile as prof
    from vrfam_rt.benchmarks.bench import Config, flops_per_image, run_bench

    set_threads(threads)
    bundle = bundle_from(bundle_path, config, seed, method)
    if roofline:
        _roofline(bundle, roofline, precision, batch, top, json_path)
        return
    runner = open_runtime(bundle, backend, precision, device, threads)
    backend, precision, device = runner.name, runner.precision, str(runner.device)
    flops = flops_per_image(bundle)
    stages = run_bench(bundle, [Config(backend, precision, runner)], (batch,), iters, 1, device,
                       flops=flops)
    layers = runner.layer_times(prof.stage_inputs(bundle, runner, batch))
    peaks = _peaks(device, precision, prof)
    peak = peaks[0]["gflops"]
    for row in stages:
        row["peak_fraction"] = row["gflops"] / peak
    click.echo(f"{backend} {precision}, batch {batch}, device {device}")
    click.echo(table(stages, [("stage", "stage", ""), ("p50 ms", "p50_ms", ".1f"),
                               ("GFLOP/s", "gflops", ".1f"),
                               (f"of {peaks[0]['device']} peak", "peak_fraction", ".1%")]))
    rows = prof.top_layers(layers, top)
    click.echo(f"\nslowest {top} layers per stage")
    click.echo(table(rows, [("stage", "stage", ""), ("layer", "layer", ""),
                             ("ms", "ms", ".2f"), ("share", "share", ".1%")]))
    click.echo("\ndevice peaks (dense GFLOP/s)")
    click.echo(table(peaks, [("device", "device", ""), ("precision", "precision", ""),
                              ("GFLOP/s", "gflops", ".0f"), ("source", "source", "")]))
    write_json(json_path, {"backend": backend, "precision": precision,
                                         "batch": batch, "device": device, "stages": stages,
                                         "layers": layers, "peaks": peaks})


def _roofline(bundle, gpu: str, precision: str, batch: int, top: int, json_path) -> None:
    """`profile --roofline`: bounds from the bundle's exported graphs (exported once)."""
    from vrfam_rt.benchmarks.roofline import roofline
    from vrfam_rt.on_demand import cache_dir, exported

    if precision not in ("fp32", "fp16"):
        raise UsageError(f"--roofline takes --precision fp16 or fp32, not {precision}")
    graphs = exported(bundle, cache_dir(bundle), precision, say=say)
    report = roofline(graphs, gpu, batch)
    click.echo(f"roofline lower bounds on {report['gpu']}, {precision}, batch {batch} "
               "(from the ONNX graphs; not a measurement)")
    click.echo(table(report["stages"], [
        ("stage", "stage", ""), ("GFLOP", "gflop", ".1f"), ("weights MB", "weight_mb", ".1f"),
        ("unfused act. MB", "unfused_activation_mb", ".0f"), ("bound ms", "bound_ms", ".3f"),
        ("bound by", "bound_by", "")]))
    for stage in ("encoder", "transformer", "generator"):
        rows = sorted((l for l in report["layers"] if l["stage"] == stage),
                      key=lambda l: -l["bound_ms"])[:top]
        for row in rows:
            row["gflop"], row["bound_us"] = row["flops"] / 1e9, row["bound_ms"] * 1e3
        click.echo(f"\n{stage}: {top} layers with the largest bound")
        click.echo(table(rows, [("layer", "layer", ""), ("op", "op", ""),
                                 ("GFLOP", "gflop", ".2f"), ("bound us", "bound_us", ".1f")]))
    write_json(json_path, report)


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


COMMANDS = (bench, profile, gpu_check_cmd)
