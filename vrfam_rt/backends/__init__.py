"""Runtime backends: one small interface, so the pipeline does not know which one runs.

Every backend is a `Backend` (backends/base.py): `encoder(image)`,
`transformer(wplus, alphas)` and `generator(wplus)` on torch tensors of the ONNX
contract's shapes (float32 I/O), plus `attributes`, `name`, `precision` and `device`;
what each runs, where and from which folders is declared once in backends/registry.py.
Run-time code only: nothing here imports the build-time packages (export, engines,
calibration, training); `vrfam_rt.on_demand` makes what a backend needs.
"""
from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

from vrfam_rt.backends import registry

if TYPE_CHECKING:
    from vrfam_rt.backends.base import Backend

__all__ = ["open_backend", "registry"]     # the registry imports no torch: --help stays fast


def open_backend(name: str, *, bundle=None, onnx_dir: str | Path | None = None,
                 engine_dir: str | Path | None = None, device: str | None = None,
                 precision: str | None = None, threads: int | None = None,
                 cuda_graphs: bool = False, fallback: str | Path | None = None,
                 cache_dir: str | Path | None = None) -> "Backend":
    """A backend by name on folders made beforehand: `eager` runs a bundle, `ort` and
    `openvino` an export folder (`onnx_dir`; `fallback`: the fp32 folder for the stages
    an INT8 folder lacks; `cache_dir`: OpenVINO's compiled-model cache), `trt` a plan
    folder (`engine_dir`). `precision=None`: the folder's own (eager: fp32)."""
    folders = {"graphs": onnx_dir, "fallback": fallback, "plans": engine_dir,
               "compiled": cache_dir}
    return registry.open_folders(name, bundle=bundle, precision=precision, device=device,
                                 folders={k: Path(v) for k, v in folders.items() if v},
                                 threads=threads, cuda_graphs=cuda_graphs)
