"""`make gpu-check`: everything worth knowing on a machine with an NVIDIA GPU, in one run.

Steps (each one recorded, none fatal to the next; the report is rewritten after each
step, so a run cut short still leaves what it measured):
1. versions, backends and devices (`vrfam-rt info`);
2. a random-weight bundle of the config; its ONNX Runtime and TensorRT runners come
   from vrfam_rt.on_demand.open_runtime (as `vrfam-rt edit` gets them), exported and
   built into `<out>/cache` when the exporter (onnx + onnxscript) is importable;
3. FP16 TensorRT plans when TensorRT is importable;
4. every runner against eager FP32: PSNR of the edited image (EditPipeline on it);
5. the benchmark: eager FP32, FP16 (also channels-last, and with the fused generator),
   BF16 and TensorRT, interleaved;
6. per-layer time of eager FP16 (the slowest layers of each stage);
7. `vrfam-rt edit` end to end on a real photo (matplotlib's grace_hopper.jpg, unaligned)
   in a subprocess, as a user would run it.
Writes `gpu-check.json` and `gpu-check.txt` into the output folder.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from vrfam_rt.bundle import Bundle
from vrfam_rt.export.parity import psnr
from vrfam_rt.fileio import write_json_atomic, write_text_atomic


def gpu_check(out: Path, config: str = "ffhq-1024", device: str = "cuda", batches=(1, 8),
              iters: int = 5, warmup: int = 2, say=print, export: bool = True) -> dict:
    from vrfam_rt.backends.eager import EagerBackend
    from vrfam_rt.benchmarks.bench import Config, run_bench
    from vrfam_rt.environment import describe, tensorrt_status
    from vrfam_rt.on_demand import open_runtime

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"config": config, "device": device, "steps": {}}
    steps = report["steps"]

    def step(name, fn):
        start = time.perf_counter()
        say(f"[gpu-check] {name} ...")
        try:
            result = fn()
            steps[name] = {"status": "ok", "seconds": round(time.perf_counter() - start, 1)}
            return result
        except Exception as exc:  # recorded; the remaining steps still run
            steps[name] = {"status": f"failed: {type(exc).__name__}: {exc}",
                           "trace": traceback.format_exc(limit=3)}
            say(f"[gpu-check] {name} failed: {exc}")
            return None
        finally:
            _write(out, report)

    report["info"] = describe()
    bundle = step("random bundle", lambda: Bundle.random(config, seed=0))
    half = "fp16" if device.startswith("cuda") else "bf16"
    exporter = export and all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript"))
    trt_ok, trt_reason = tensorrt_status()
    runners = {}
    if bundle is None:
        return _write(out, report)
    runners["eager fp32"] = EagerBackend(bundle, device=device)
    runners[f"eager {half}"] = EagerBackend(bundle, device=device, precision=half)
    if device.startswith("cuda"):
        runners["eager fp16-nhwc"] = EagerBackend(bundle, device=device, precision="fp16",
                                                  channels_last=True)
        runners["eager fp16-fused"] = EagerBackend(bundle, device=device, precision="fp16",
                                                   generator_form={"fused": True})
        runners["eager bf16"] = EagerBackend(bundle, device=device, precision="bf16")
        runners["eager fp32-graphs"] = EagerBackend(bundle, device=device, cuda_graphs=True)
        runners["eager fp16-graphs"] = EagerBackend(bundle, device=device, precision="fp16",
                                                    cuda_graphs=True)
    # The ONNX and TensorRT runners come from the runtime, as `vrfam-rt edit` gets them:
    # graphs exported and plans built on demand, into a cache under the output folder
    # (a rerun on the same machine reuses them).
    cache = out / "cache"
    if exporter:
        ort = step("export fp32 + ort", lambda: open_runtime(
            bundle, "ort", "fp32", cache_root=cache, say=say))
        if ort:
            runners["ort fp32"] = ort
    else:
        steps["export"] = {"status": "skipped: " + ("onnx/onnxscript not importable" if export
                                                    else "--no-export")}
    if trt_ok and exporter:
        plans = step("build fp16 engines", lambda: open_runtime(
            bundle, "trt", "fp16", device=device, cache_root=cache, say=say,
            max_batch=max(batches)))
        if plans:
            runners["trt fp16"] = plans
    else:
        steps["build fp16 engines"] = {"status": "skipped: " + (
            trt_reason if not trt_ok else "no exporter")}

    def parity():
        from vrfam_rt.pipeline import EditPipeline

        gen = torch.Generator().manual_seed(1)
        size = bundle.config.encoder.input_size
        image = torch.rand(1, 3, size, size, generator=gen) * 2 - 1        # [1,3,S,S]
        alphas = torch.zeros(1, len(bundle.attributes))                     # [1,K]
        alphas[:, 0] = 1.0

        def edited(runner):                  # the edit as the pipeline runs it: [1,3,R,R]
            pipe = EditPipeline(runner, size, align=False)
            return pipe.render(pipe.encode(image), alphas).cpu()
        reference = edited(runners["eager fp32"])
        return {name: psnr(reference, edited(r))
                for name, r in runners.items() if name != "eager fp32"}
    report["psnr_vs_eager_fp32_db"] = step("parity", parity)

    bench_runners = {k: v for k, v in runners.items() if not k.startswith("ort")}
    configs = [Config(*name.split(), runner) for name, runner in bench_runners.items()]
    report["bench"] = step("bench", lambda: run_bench(bundle, configs, batches, iters, warmup,
                                                      device=device))

    def layers():
        from vrfam_rt.benchmarks.profile import stage_inputs, top_layers
        runner = runners[f"eager {half}"]
        return top_layers(runner.layer_times(stage_inputs(bundle, runner, 1)), 6)
    report["layers_eager_half"] = step(f"layers eager {half}", layers)
    report["edit_cli"] = step("edit CLI", lambda: _edit_cli(out, config, device, half))
    return _write(out, report)


def _edit_cli(out: Path, config: str, device: str, precision: str) -> dict:
    """`vrfam-rt edit` on grace_hopper.jpg in a subprocess; raises unless it wrote the grid."""
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    target = out / "edit"
    command = [sys.executable, "-m", "vrfam_rt", "edit", str(photo), "--config", config,
               "--attr", "Smiling=1.0", "--attr", "Eyeglasses=-0.5", "--no-align", "--grid",
               "--backend", "eager", "--precision", precision, "--device", device,
               "--out", str(target)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    written = sorted(p.name for p in target.glob("*.png")) if target.is_dir() else []
    result = {"command": " ".join(command[1:]), "exit_code": done.returncode,
              "seconds": round(time.perf_counter() - start, 1), "written": written,
              "stderr_tail": done.stderr[-600:]}
    if done.returncode != 0 or not any(name.endswith("_grid.png") for name in written):
        raise RuntimeError(f"vrfam-rt edit failed: {result}")
    return result


def _write(out: Path, report: dict) -> dict:
    write_json_atomic(out / "gpu-check.json", report)
    lines = [f"gpu-check {report['config']} on {report['device']}"]
    for name, s in report["steps"].items():
        lines.append(f"  {name:<20} {s['status']}" + (f" ({s['seconds']} s)" if "seconds" in s else ""))
    for name, value in (report.get("psnr_vs_eager_fp32_db") or {}).items():
        lines.append(f"  PSNR {name:<16} {value:.1f} dB vs eager fp32")
    for r in report.get("bench") or []:
        if r["stage"] == "total":
            lines.append(f"  {r['backend']:<6} {r['precision']:<11} batch {r['batch']:<3} "
                         f"p50 {r['p50_ms']:8.1f} ms  {r['images_per_s']:7.2f} img/s  "
                         f"x{r['speedup_vs_eager']:.2f} vs eager fp32")
    for r in report.get("layers_eager_half") or []:
        lines.append(f"  layer {r['stage']:<12} {r['layer']:<24} {r['ms']:8.2f} ms "
                     f"{r['share']:6.1%} of stage")
    if report.get("edit_cli"):
        e = report["edit_cli"]
        lines.append(f"  edit CLI exit {e['exit_code']} in {e['seconds']} s: {', '.join(e['written'])}")
    write_text_atomic(out / "gpu-check.txt", "\n".join(lines) + "\n")
    return report
