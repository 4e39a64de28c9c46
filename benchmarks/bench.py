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
from vrfam_rt.errors import UsageError, VrfamError
from vrfam_rt.images import save_png
from vrfam_rt.on_demand import bundle_args
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


BASELINE = ("eager", "fp32")      # every bench times it: the "vs eager" column's 1.0


def configurations(bundle: Bundle, backends, precisions, device: str, threads: int | None,
                   folders: dict[str, Path] | None = None, source: str = "the export",
                   engine_dir: Path | None = None, say=lambda message: None) -> list[Config]:
    """The baseline, then each backend at each asked precision it runs on `device` (as
    backends.registry declares; a precision it remaps runs once, under its own name),
    opened on the user's folders where given (`folders`: an export's {"fp32": ...,
    "int8-openvino": ...}; `engine_dir`: plans), else on the bundle's cache (exported,
    calibrated, built on first use). Backends that cannot run here are opened first, so
    that a missing GPU stops the bench before minutes of other set-up."""
    from vrfam_rt.backends import registry
    from vrfam_rt.on_demand import open_runtime

    asked = [BASELINE] + [(b, p) for b in registry.NAMES if b in backends for p in precisions]
    choices = {}
    for backend, precision in asked:
        try:
            choice = registry.resolve(backend, precision, device)
        except UsageError as exc:
            say(f"bench: skipping {backend} {precision}: {exc}")
            continue
        choices.setdefault((backend, choice.precision), choice)
    opened = {}
    for key, choice in sorted(choices.items(), key=lambda kv: kv[1].spec.probe()[0]):
        given = _given_folders(bundle, choice, folders, source, engine_dir)
        opened[key] = (open_runtime(bundle, *key, device, threads, say=say) if given is None
                       else registry.open_folders(key[0], bundle=bundle, precision=key[1],
                                                  device=device, folders=given, threads=threads))
    configs = [Config(b, runner.precision, runner) for (b, _), runner in
               ((key, opened[key]) for key in choices)]
    return list({c.label: c for c in reversed(configs)}.values())[::-1]   # bf16 -> fp32 repeats


def _given_folders(bundle: Bundle, choice, folders: dict[str, Path] | None, source: str,
                   engine_dir: Path | None) -> dict[str, Path] | None:
    """The user's folders a choice opens, or None: the bundle's cache makes them."""
    from vrfam_rt.backends import registry
    from vrfam_rt.on_demand import cache_dir

    needs, name = choice.needs, choice.spec.name
    if needs is None:
        return {}
    if needs.plans:
        return {"plans": engine_dir} if engine_dir else None
    if folders is None:
        return None
    names = registry.graph_folders(name, choice.precision)
    found = next((n for n in names if n in folders), None)
    if found is None:
        root = next(iter(folders.values())).parent
        how = (f"calibrate {bundle_args(bundle)} --target {names[0][5:]} --samples 64 --out {root}"
               if names[0].startswith("int8-") else
               f"export {bundle_args(bundle)} --precision {names[0]} --out {root}")
        raise VrfamError(f"{source} holds no {names[0]} graphs (it holds "
                         f"{', '.join(folders)}); make them with `vrfam-rt {how}`")
    given = {"graphs": folders[found]}
    if needs.fallback and needs.fallback in folders:
        given["fallback"] = folders[needs.fallback]
    if choice.spec.compiled_cache:
        given["compiled"] = cache_dir(bundle) / choice.spec.compiled_cache
    return given
