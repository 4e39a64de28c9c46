"""Parity of exported graphs (through ONNX Runtime) against the eager networks."""
from __future__ import annotations

from pathlib import Path

import torch

from vrfam_rt.backends.ort import OrtBackend
from vrfam_rt.bundle import Bundle
from vrfam_rt.contract import example_inputs

# FP32 graphs must match eager: images to 1e-4 absolute, W+ to 1e-4 of max|W+|.
FP32_TOLERANCE = {"encoder": ("max_rel", 1e-4), "transformer": ("max_rel", 1e-4),
                  "generator": ("max_abs", 1e-4)}


def parity(bundle: Bundle, folder: str | Path, batches=(1, 3),
           threads: int | None = None) -> list[dict]:
    """One row per component and batch: max abs and max relative error vs eager."""
    backend = OrtBackend(folder, threads=threads)
    rows = []
    for component in backend.manifest["files"]:
        for batch in batches:
            inputs = example_inputs(bundle, component, batch)
            with torch.no_grad():
                reference = bundle.modules[component](*inputs)
            got = backend.run(component, *inputs)
            diff = (got - reference).abs().max().item()
            row = {"component": component, "precision": backend.precision, "batch": batch,
                   "max_abs": diff, "max_rel": diff / reference.abs().max().item()}
            if backend.precision == "fp32":
                metric, limit = FP32_TOLERANCE[component]
                row["limit"] = f"{metric} <= {limit:g}"
                row["ok"] = row[metric] <= limit
            rows.append(row)
    return rows
