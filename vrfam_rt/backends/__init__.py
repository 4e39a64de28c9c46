"""Runtime backends: one small interface, so the pipeline does not know which one runs.

Every backend offers `encoder(image)`, `transformer(wplus, alphas)` and
`generator(wplus)` on torch tensors of the ONNX contract's shapes (float32 I/O), plus
`attributes`, `name`, `precision` and `device`.
"""
from __future__ import annotations

from pathlib import Path

from vrfam_rt.errors import VrfamError

BACKENDS = ("eager", "ort", "trt")


class Backend:
    """The stage calls every backend offers; subclasses implement `run(stage, *inputs)`."""

    name: str
    precision: str
    attributes: tuple[str, ...]

    def _read_folder(self, folder: str | Path, made_by: str) -> None:
        """Take `folder`'s manifest.json (precision, attribute order, files)."""
        import json

        self.folder = Path(folder)
        path = self.folder / "manifest.json"
        if not path.is_file():
            raise VrfamError(f"{self.folder} holds no manifest.json; {made_by}")
        try:
            self.manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise VrfamError(f"{path} is not valid JSON ({exc}); {made_by}") from None
        self.precision = self.manifest["precision"]
        self.attributes = tuple(self.manifest["attributes"])

    def _entry(self, stage: str, how: str) -> dict:
        """The manifest entry of a stage's file; a missing one names how to make it."""
        entry = self.manifest["files"].get(stage)
        if entry is None:
            raise VrfamError(f"{self.folder} has no {stage} file; {how}")
        return entry

    def run(self, stage: str, *inputs):
        raise NotImplementedError

    def encoder(self, image):                 # [B,3,S,S] -> W+ [B,L,D]
        return self.run("encoder", image)

    def transformer(self, wplus, alphas):     # [B,L,D], [B,K] -> [B,L,D]
        return self.run("transformer", wplus, alphas)

    def generator(self, wplus):               # [B,L,D] -> image [B,3,R,R]
        return self.run("generator", wplus)


def open_backend(name: str, *, bundle=None, onnx_dir: str | Path | None = None,
                 engine_dir: str | Path | None = None, device: str = "cpu",
                 precision: str = "fp32", threads: int | None = None, cuda_graphs: bool = False):
    """A backend by name: `eager` runs a bundle, `ort` an export folder, `trt` plans."""
    if name == "eager":
        from vrfam_rt.backends.eager import EagerBackend
        if bundle is None:
            raise VrfamError("the eager backend needs a bundle (--bundle or --config)")
        return EagerBackend(bundle, device=device, precision=precision, cuda_graphs=cuda_graphs)
    if name == "ort":
        from vrfam_rt.backends.ort import OrtBackend
        if onnx_dir is None:
            raise VrfamError("the ort backend needs an export folder (vrfam-rt export --out DIR)")
        return OrtBackend(onnx_dir, device=device, threads=threads)
    if name == "trt":
        from vrfam_rt.backends.trt import TrtBackend
        if engine_dir is None:
            raise VrfamError("the trt backend needs a plan folder (vrfam-rt build-engines --out DIR)")
        return TrtBackend(engine_dir, device="cuda" if device == "cpu" else device)
    raise VrfamError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
