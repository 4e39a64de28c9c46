"""What every backend is: three stage calls on torch tensors, and where their outputs live.

The device contract: a stage takes float32 tensors of the ONNX contract's shapes
(vrfam_rt.contract) on any device, and returns a float32, contiguous tensor on the
backend's `device` (the CPU for eager-cpu and ort-cpu; the GPU for CUDA backends,
with no host copy in between), so stages chain without copies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from vrfam_rt import manifests
from vrfam_rt.errors import VrfamError


@runtime_checkable
class StageBackend(Protocol):
    """The typed interface the pipeline, the benchmarks and the server rely on."""

    name: str                        # "eager", "ort", "trt"
    precision: str                   # "fp32", "fp16", "bf16", "int8"
    attributes: tuple[str, ...]      # the order of the transformer's alphas
    device: torch.device             # where every stage's output lives

    def encoder(self, image: torch.Tensor) -> torch.Tensor:
        """image [B,3,S,S] in [-1,1] -> W+ [B,L,D]"""
        ...

    def transformer(self, wplus: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """W+ [B,L,D], alphas [B,K] -> edited W+ [B,L,D]"""
        ...

    def generator(self, wplus: torch.Tensor) -> torch.Tensor:
        """W+ [B,L,D] -> image [B,3,R,R], about [-1,1]"""
        ...

    def edit(self, image: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """The three stages in turn: image [B,3,S,S], alphas [B,K] -> edited image"""
        ...


class Backend:
    """The stage calls every backend offers; subclasses implement `run(stage, *inputs)`."""

    name: str
    precision: str
    attributes: tuple[str, ...]
    device: torch.device
    folder: Path
    manifest: dict[str, Any]

    def _read_folder(self, folder: str | Path, kind: str) -> None:
        """Take `folder`'s manifest of `kind` (precision, attribute order, files)."""
        self.folder = Path(folder)
        self.manifest = manifests.read(self.folder, kind)
        self.precision = self.manifest["precision"]
        self.attributes = tuple(self.manifest["attributes"])

    def _entry(self, stage: str, how: str) -> dict:
        """The manifest entry of a stage's file; a missing one names how to make it."""
        entry = self.manifest["files"].get(stage)
        if entry is None:
            raise VrfamError(f"{self.folder} has no {stage} file; {how}")
        return entry

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encoder(self, image: torch.Tensor) -> torch.Tensor:
        return self.run("encoder", image)

    def transformer(self, wplus: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        return self.run("transformer", wplus, alphas)

    def generator(self, wplus: torch.Tensor) -> torch.Tensor:
        return self.run("generator", wplus)

    def edit(self, image: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        return self.generator(self.transformer(self.encoder(image), alphas))
