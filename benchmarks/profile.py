"""Per-stage and per-layer time of one edit, and how far each stage is from the peak.

Per layer, each backend times itself (`Backend.layer_times`): eager with forward hooks,
ort with ONNX Runtime's profiler, openvino with its performance counters, trt with
TensorRT's layer profiler.
"""
from __future__ import annotations


import torch

from vrfam_rt.bundle import Bundle
from vrfam_rt.contract import STAGE_NAMES, example_inputs

# Published dense peaks in GFLOP/s (FP32, and FP16 tensor cores with FP32 accumulation).
DEVICE_PEAKS = {
    "NVIDIA GeForce RTX 2080 Ti": {"fp32": 13_450, "fp16": 56_900},
    "NVIDIA H100 80GB HBM3": {"fp32": 66_900, "fp16": 989_000},
    "NVIDIA H200": {"fp32": 66_900, "fp16": 989_000},
}


def measure_cpu_peak(size: int = 2048, repeats: int = 5) -> float:
    """FP32 GFLOP/s of a large matmul on this CPU with torch's threads (best of `repeats`)."""
    from vrfam_rt.benchmarks.bench import best_gflops

    a, b = torch.randn(size, size), torch.randn(size, size)
    return best_gflops(lambda: a @ b, 2 * size**3, repeats)


def stage_inputs(bundle: Bundle, runner, batch: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """{stage: its inputs} for one profiled edit of `batch` seeded images on `runner`'s
    device (the transformer and generator take the encoder's W+)."""
    image = example_inputs(bundle, "encoder", batch)[0].to(runner.device)
    alphas = torch.zeros(batch, len(bundle.attributes), device=runner.device)
    alphas[:, 0] = 1.0
    wplus = runner.encoder(image)
    return {"encoder": (image,), "transformer": (wplus, alphas), "generator": (wplus,)}


def top_layers(rows: list[dict], count: int = 10) -> list[dict]:
    """The `count` slowest layers of each stage with their share of the stage time."""
    out = []
    for stage in STAGE_NAMES:
        mine = sorted((r for r in rows if r["stage"] == stage), key=lambda r: -r["ms"])
        total = sum(r["ms"] for r in mine) or 1.0
        out += [r | {"share": r["ms"] / total} for r in mine[:count]]
    return out
