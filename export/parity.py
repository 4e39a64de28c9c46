"""Parity of exported graphs (through ONNX Runtime) against the eager networks."""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable

import torch

from vrfam_rt.backends.ort import OrtBackend
from vrfam_rt.bundle import Bundle
from vrfam_rt.contract import example_inputs

# FP32 graphs must match eager: images to 1e-4 absolute, W+ to 1e-4 of max|W+|.
FP32_TOLERANCE = {"encoder": ("max_rel", 1e-4), "transformer": ("max_rel", 1e-4),
                  "generator": ("max_abs", 1e-4)}


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    """PSNR in dB with the reference's value range as peak (2 for images in [-1,1])."""
    mse = (reference - other).double().pow(2).mean().item()
    peak = (reference.max() - reference.min()).item()
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def against_eager(bundle: Bundle, component: str, batch: int,
                  run: Callable[..., torch.Tensor]) -> dict:
    """`run` on the contract's seeded inputs against the eager FP32 network.

    max_abs; max_rel (relative to max|reference|); rel_l2; finite (no inf/NaN); and for
    the generator, psnr_db of the image.
    """
    inputs = example_inputs(bundle, component, batch)
    with torch.no_grad():
        reference = bundle.modules[component](*inputs)
    got = run(*inputs).to(reference.device)
    finite = bool(torch.isfinite(got).all())
    diff = (got - reference).abs().max().item()
    row = {"finite": finite, "max_abs": diff,
           "max_rel": diff / reference.abs().max().item(),
           "rel_l2": ((got - reference).norm() / reference.norm()).item()}
    if component == "generator":
        row["psnr_db"] = psnr(reference, got) if finite else -math.inf
    return row


def parity(bundle: Bundle, folder: str | Path, batches=(1, 3),
           threads: int | None = None) -> list[dict]:
    """One row per component and batch: max abs and max relative error vs eager."""
    backend = OrtBackend(folder, threads=threads)
    rows = []
    for component in backend.manifest["files"]:
        for batch in batches:
            row = {"component": component, "precision": backend.precision, "batch": batch,
                   **against_eager(bundle, component, batch,
                                   functools.partial(backend.run, component))}
            if backend.precision == "fp32":
                metric, limit = FP32_TOLERANCE[component]
                row["limit"] = f"{metric} <= {limit:g}"
                row["ok"] = row[metric] <= limit
            rows.append(row)
    return rows
