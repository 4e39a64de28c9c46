"""`make gpu-check`: everything worth knowing on a machine with an NVIDIA GPU, in one run.

Steps (each one recorded, none fatal to the next):
1. versions, backends and devices (`vrfam-rt info`);
2. a random-weight bundle of the config, exported to ONNX (FP32 + FP16) when the
   exporter (onnx + onnxscript) is importable;
3. FP16 TensorRT plans when TensorRT is importable;
4. every available backend against eager FP32: PSNR of the edited image;
5. the benchmark: eager FP32, eager FP16 (BF16 on a CPU dry run) and TensorRT.
Writes `gpu-check.json` and `gpu-check.txt` into the output folder.
"""
from __future__ import annotations

import importlib.util
import json
import time
import traceback
from pathlib import Path

import torch

from vrfam_rt.bundle import Bundle
from vrfam_rt.export.fp16 import psnr


def _edit(runner, image, alphas):
    return runner.generator(runner.transformer(runner.encoder(image), alphas))


def gpu_check(out: Path, config: str = "ffhq-1024", device: str = "cuda", batches=(1, 8),
              iters: int = 5, warmup: int = 2, say=print) -> dict:
    from vrfam_rt.backends.eager import EagerBackend
    from vrfam_rt.backends.ort import OrtBackend
    from vrfam_rt.benchmarks.bench import Config, run_bench
    from vrfam_rt.environment import describe, tensorrt_status

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

    report["info"] = describe()
    bundle = step("random bundle", lambda: Bundle.random(config, seed=0))
    half = "fp16" if device.startswith("cuda") else "bf16"
    exporter = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript"))
    trt_ok, trt_reason = tensorrt_status()
    runners = {}
    if bundle is None:
        return _write(out, report)
    runners["eager fp32"] = EagerBackend(bundle, device=device)
    runners[f"eager {half}"] = EagerBackend(bundle, device=device, precision=half)
    if exporter:
        from vrfam_rt.export.lowering import export_bundle
        exported = step("export fp32+fp16", lambda: export_bundle(
            bundle, out / "onnx", ("fp32", "fp16"), overwrite=True))
        if exported:
            runners["ort fp32"] = OrtBackend(out / "onnx" / "fp32")
    else:
        steps["export fp32+fp16"] = {"status": "skipped: onnx/onnxscript not importable"}
    if trt_ok and "ort fp32" in runners:
        from vrfam_rt.backends.trt import TrtBackend
        from vrfam_rt.engines.build import build_engines
        built = step("build fp16 engines", lambda: build_engines(
            out / "onnx" / "fp16", out / "engines", max_batch=max(batches)))
        if built:
            runners["trt fp16"] = TrtBackend(out / "engines")
    else:
        steps["build fp16 engines"] = {"status": f"skipped: {trt_reason}"}

    def parity():
        gen = torch.Generator().manual_seed(1)
        size = bundle.config.encoder.input_size
        image = (torch.rand(1, 3, size, size, generator=gen) * 2 - 1).to(device)
        alphas = torch.zeros(1, len(bundle.attributes), device=device)
        alphas[:, 0] = 1.0
        reference = _edit(runners["eager fp32"], image, alphas).cpu()
        return {name: psnr(reference, _edit(r, image, alphas).cpu())
                for name, r in runners.items() if name != "eager fp32"}
    report["psnr_vs_eager_fp32_db"] = step("parity", parity)

    bench_runners = {k: v for k, v in runners.items() if not k.startswith("ort")}
    configs = [Config(*name.split(), runner) for name, runner in bench_runners.items()]
    report["bench"] = step("bench", lambda: run_bench(bundle, configs, batches, iters, warmup,
                                                      device=device))
    return _write(out, report)


def _write(out: Path, report: dict) -> dict:
    (out / "gpu-check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    lines = [f"gpu-check {report['config']} on {report['device']}"]
    for name, s in report["steps"].items():
        lines.append(f"  {name:<20} {s['status']}" + (f" ({s['seconds']} s)" if "seconds" in s else ""))
    for name, value in (report.get("psnr_vs_eager_fp32_db") or {}).items():
        lines.append(f"  PSNR {name:<16} {value:.1f} dB vs eager fp32")
    for r in report.get("bench") or []:
        if r["stage"] == "total":
            lines.append(f"  {r['backend']:<6} {r['precision']:<5} batch {r['batch']:<3} "
                         f"p50 {r['p50_ms']:8.1f} ms  {r['images_per_s']:7.2f} img/s  "
                         f"x{r['speedup_vs_eager']:.2f} vs eager fp32")
    (out / "gpu-check.txt").write_text("\n".join(lines) + "\n")
    return report
