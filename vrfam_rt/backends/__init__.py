"""Runtime backends: one small interface, so the pipeline does not know which one runs.

Every backend offers `encoder(image)`, `transformer(wplus, alphas)` and
`generator(wplus)` on torch tensors of the ONNX contract's shapes (float32 I/O), plus
`attributes`, `name`, `precision` and `device`.
"""
from __future__ import annotations

from pathlib import Path

from vrfam_rt.errors import VrfamError

BACKENDS = ("eager", "ort")


def open_backend(name: str, *, bundle=None, onnx_dir: str | Path | None = None,
                 device: str = "cpu", precision: str = "fp32", threads: int | None = None):
    """A backend by name: `eager` runs a bundle, `ort` runs an export folder."""
    if name == "eager":
        from vrfam_rt.backends.eager import EagerBackend
        if bundle is None:
            raise VrfamError("the eager backend needs a bundle (--bundle or --config)")
        return EagerBackend(bundle, device=device, precision=precision)
    if name == "ort":
        from vrfam_rt.backends.ort import OrtBackend
        if onnx_dir is None:
            raise VrfamError("the ort backend needs an export folder (vrfam-rt export --out DIR)")
        return OrtBackend(onnx_dir, device=device, threads=threads)
    raise VrfamError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
