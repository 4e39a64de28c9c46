"""Latency and throughput of the edit stages per backend, against eager FP32.

Every configuration runs the same seeded inputs through encoder -> transformer ->
generator. Iterations are interleaved across configurations (one iteration of each
in turn), so drift in machine load hits all of them alike; warm-up iterations are
not recorded. CUDA stages are timed with events on the current stream, CPU stages
with perf_counter.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vrfam_rt.bundle import Bundle
from vrfam_rt.errors import VrfamError
from vrfam_rt.images import save_png
from vrfam_rt.runtime import bundle_args
from vrfam_rt.contract import STAGE_NAMES, example_inputs
from vrfam_rt.export.lowering import policy_module

STAGES = (*STAGE_NAMES, "total")


@dataclass
class Config:
    backend: str
    precision: str
    runner: object          # a vrfam_rt.backends.Backend

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


def flops_per_image(bundle: Bundle) -> dict[str, int]:
    """FLOPs of one image through each stage (2 per multiply-add), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = {}
    for stage in STAGE_NAMES:
        module = policy_module(bundle, stage, "fp32")
        inputs = [x.to("meta") for x in example_inputs(bundle, stage, 1)]
        weights = {name: t.to("meta") for name, t in module.state_dict().items()}
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            torch.func.functional_call(module, weights, tuple(inputs))
        counts[stage] = int(counter.get_total_flops())
    counts["total"] = sum(counts.values())
    return counts


class _Clock:
    """Marks on a timeline: CUDA events on the current stream, or perf_counter."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks = []

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals_ms(self) -> list[float]:
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]


def _edit_once(runner, image, alphas, device) -> dict[str, float]:
    clock = _Clock(device)
    clock.mark()
    wplus = runner.encoder(image)
    clock.mark()
    edited = runner.transformer(wplus, alphas)
    clock.mark()
    runner.generator(edited)
    clock.mark()
    encoder, transformer, generator = clock.intervals_ms()
    return {"encoder": encoder, "transformer": transformer, "generator": generator,
            "total": encoder + transformer + generator}


def best_gflops(run, flops: float, repeats: int = 5) -> float:
    """GFLOP/s of `run()` (doing `flops`), the best of `repeats` timed calls after one."""
    with torch.no_grad():
        run()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def measure_fp32_peak(repeats: int = 5) -> dict:
    """The CPU's FP32 GFLOP/s with torch's threads, measured now: the best of `repeats`
    runs of a 2048^3 matmul and of a 3x3 convolution of StyleGAN2's 512-channel 64x64
    layers; the higher of the two is the peak that bounds an edit from below."""
    import torch.nn.functional as F

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x, w = torch.randn(1, 512, 64, 64), torch.randn(512, 512, 3, 3)
    kernels = {"matmul 2048^3": (lambda: a @ b, 2 * 2048**3),
               "conv3x3 512ch 64x64": (lambda: F.conv2d(x, w, padding=1),
                                       2 * 512 * 512 * 9 * 64 * 64)}
    found = {name: best_gflops(run, flops, repeats) for name, (run, flops) in kernels.items()}
    kernel = max(found, key=found.get)
    return {"gflops": found[kernel], "kernel": kernel, "measured": found,
            "threads": torch.get_num_threads()}


def add_floor(rows: list[dict], flops: dict[str, int], peak_gflops: float) -> None:
    """Each row's FP32 floor (its FLOPs at the measured FP32 peak, ms) and its p50 as a
    multiple of it: below 1 only compute below FP32 (bf16, int8) or less work can go."""
    for row in rows:
        row["floor_ms"] = flops[row["stage"]] * row["batch"] / (peak_gflops * 1e9) * 1e3
        row["x_floor"] = row["p50_ms"] / row["floor_ms"]


def run_bench(bundle: Bundle, configs: list[Config], batches=(1,), iters: int = 5,
              warmup: int = 1, device: str = "cpu", progress=None,
              flops: dict[str, int] | None = None) -> list[dict]:
    """One row per configuration, batch and stage (schema of `vrfam-rt bench --json`)."""
    device = torch.device(device)
    flops = flops or flops_per_image(bundle)
    rows = []
    for batch in batches:
        image = example_inputs(bundle, "encoder", batch)[0].to(device)
        alphas = torch.zeros(batch, len(bundle.attributes), device=device)
        alphas[:, 0] = 1.0
        samples = {c.label: {s: [] for s in STAGES} for c in configs}
        for i in range(warmup + iters):
            for config in configs:
                times = _edit_once(config.runner, image, alphas, device)
                if i >= warmup:
                    for stage, ms in times.items():
                        samples[config.label][stage].append(ms)
            if progress:
                progress(batch, i + 1, warmup + iters)
        baseline = samples.get("eager fp32")
        for config in configs:
            rows += stage_rows(config, batch, samples[config.label], flops, baseline)
    return rows


def stage_rows(config: Config, batch: int, samples_ms: dict[str, list[float]],
               flops: dict[str, int], baseline_ms: dict[str, list[float]] | None) -> list[dict]:
    """The figures of one configuration at one batch, a row per stage, from its latencies.

    samples_ms / baseline_ms: per stage, the recorded milliseconds of one batch (baseline:
    eager FP32's, or None); flops: per stage, FLOPs of one image.
    """
    rows = []
    for stage in STAGES:
        values = np.array(samples_ms[stage])
        p50 = float(np.percentile(values, 50))
        base = float(np.percentile(baseline_ms[stage], 50)) if baseline_ms else None
        rows.append({
            "backend": config.backend, "precision": config.precision, "batch": batch,
            "stage": stage, "p50_ms": p50,
            "p90_ms": float(np.percentile(values, 90)),
            "p99_ms": float(np.percentile(values, 99)),
            "images_per_s": batch * 1e3 / p50,
            "gflops": flops[stage] * batch / (p50 / 1e3) / 1e9,
            "speedup_vs_eager": base / p50 if base else None})
    return rows


NOISY_SPREAD = 1.5   # p90 / p50 of a configuration's whole edit above this: a busy machine


def noisy(rows: list[dict], limit: float = NOISY_SPREAD) -> list[str]:
    """One warning per configuration and batch whose end-to-end p90 exceeds `limit` x
    its p50: other work shared the CPU (or GPU) while it was timed, and its p50 may move."""
    return [f"warning: {r['backend']} {r['precision']} batch {r['batch']}: p90 is "
            f"{r['p90_ms'] / r['p50_ms']:.1f}x p50 ({r['p90_ms']:.1f} vs {r['p50_ms']:.1f} ms); "
            f"the machine was busy: rerun on an idle one or with more --iters"
            for r in rows if r["stage"] == "total" and r["p90_ms"] > limit * r["p50_ms"]]


def eager_configs(bundle: Bundle, precisions, device: str) -> list[Config]:
    from vrfam_rt.backends.eager import EagerBackend

    return [Config("eager", p, EagerBackend(bundle, device=device, precision=p))
            for p in precisions]


def plot_png(rows: list[dict], path) -> None:
    """Horizontal bars of end-to-end p50 latency per configuration and batch (PIL only)."""
    from PIL import Image, ImageDraw

    totals = [r for r in rows if r["stage"] == "total"]
    longest = max(r["p50_ms"] for r in totals)
    height = 40 + 26 * len(totals)
    img = Image.new("RGB", (900, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), "end-to-end p50 latency per edit batch (ms)", fill="black")
    for i, r in enumerate(totals):
        y = 36 + 26 * i
        label = f"{r['backend']} {r['precision']} b{r['batch']}"
        width = int(560 * r["p50_ms"] / longest)
        draw.text((10, y + 4), label, fill="black")
        draw.rectangle([200, y, 200 + max(width, 1), y + 18], fill=(70, 110, 190))
        draw.text((208 + width, y + 4), f"{r['p50_ms']:.1f}", fill="black")
    save_png(img, path)


INT8_TARGETS = {"openvino": ("openvino", "cpu"), "ort": ("cpu",)}   # calibrate --target


def onnx_configs(bundle: Bundle, backend: str, precisions, folders: dict[str, Path],
                 device: str, threads: int | None, source: str = "the export",
                 cache: Path | None = None) -> list[Config]:
    """ONNX Runtime or OpenVINO configurations over an export's folders ({"fp32": ...,
    "fp16": ..., "int8-openvino": ...}; int8's uncalibrated stages run from fp32; OpenVINO's
    bf16 compiles the fp32 graphs with its bf16 hint)."""
    from vrfam_rt.backends import open_backend

    configs = []
    for precision in precisions:
        if precision == "int8":       # the graphs calibrated for this runtime, else any it runs
            names = [f"int8-{t}" for t in INT8_TARGETS[backend]]
            name = next((n for n in names if n in folders), names[0])
        else:
            name = "fp32" if backend == "openvino" else precision
        if name not in folders:
            root = next(iter(folders.values())).parent
            how = (f"calibrate {bundle_args(bundle)} --target {name[5:]} --samples 64 --out {root}"
                   if precision == "int8" else
                   f"export {bundle_args(bundle)} --precision {precision} --out {root}")
            raise VrfamError(f"{source} holds no {name} graphs (it holds "
                             f"{', '.join(folders)}); make them with `vrfam-rt {how}`")
        fallback = folders.get("fp32") if precision == "int8" else None
        runner = open_backend(backend, onnx_dir=folders[name], device=device,
                              precision=precision, threads=threads, fallback=fallback,
                              cache_dir=cache)
        configs.append(Config(backend, runner.precision, runner))
    return configs
