"""Runtime backends: one small interface, so the pipeline does not know which one runs.

Every backend is a `StageBackend` (backends/base.py): `encoder(image)`,
`transformer(wplus, alphas)` and `generator(wplus)` on torch tensors of the ONNX
contract's shapes (float32 I/O), plus `attributes`, `name`, `precision` and `device`.
Run-time code only: nothing here imports the build-time packages (export, engines,
calibration, training); `vrfam_rt.runtime` makes what a backend needs.
"""
from __future__ import annotations

from pathlib import Path

from vrfam_rt.backends.base import Backend, StageBackend
from vrfam_rt.errors import VrfamError

__all__ = ["BACKENDS", "Backend", "StageBackend", "open_backend"]

BACKENDS = ("eager", "ort", "openvino", "trt")


def open_backend(name: str, *, bundle=None, onnx_dir: str | Path | None = None,
                 engine_dir: str | Path | None = None, device: str = "cpu",
                 precision: str = "fp32", threads: int | None = None,
                 cuda_graphs: bool = False, fallback: str | Path | None = None,
                 cache_dir: str | Path | None = None) -> StageBackend:
    """A backend by name: `eager` runs a bundle, `ort` and `openvino` an export folder
    (`fallback`: the fp32 folder for the stages an INT8 folder lacks; `cache_dir`:
    OpenVINO's compiled-model cache), `trt` plans."""
    if name == "eager":
        from vrfam_rt.backends.eager import EagerBackend
        if bundle is None:
            raise VrfamError("the eager backend needs a bundle (--bundle or --config)")
        return EagerBackend(bundle, device=device, precision=precision, cuda_graphs=cuda_graphs)
    if name == "ort":
        from vrfam_rt.backends.ort import OrtBackend
        if onnx_dir is None:
            raise VrfamError("the ort backend needs an export folder (vrfam-rt export --out DIR)")
        return OrtBackend(onnx_dir, device=device, threads=threads, fallback=fallback)
    if name == "openvino":
        from vrfam_rt.backends.openvino import OpenVinoBackend
        if onnx_dir is None:
            raise VrfamError("the openvino backend needs an export folder (vrfam-rt export "
                             "--out DIR)")
        return OpenVinoBackend(onnx_dir, precision, threads, cache_dir, fallback)
    if name == "trt":
        from vrfam_rt.backends.trt import TrtBackend
        if engine_dir is None:
            raise VrfamError("the trt backend needs a plan folder (vrfam-rt build-engines --out DIR)")
        return TrtBackend(engine_dir, device="cuda" if device == "cpu" else device)
    raise VrfamError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
