"""What every backend is: three stage calls on torch tensors, and where their outputs live.

The device contract: a stage takes floating tensors of the ONNX contract's shapes
(vrfam_rt.contract; checked before it runs, the error naming the stage) on any device,
and returns a float32, contiguous tensor on the backend's `device` (the CPU for
eager-cpu and ort-cpu; the GPU for CUDA backends, with no host copy in between), so
stages chain without copies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vrfam_rt import manifests
from vrfam_rt.contract import check_input
from vrfam_rt.errors import UsageError, VrfamError


class Backend:
    """The stage calls every backend offers; subclasses implement `open` (from the
    folders their registry spec needs) and `run(stage, *inputs)`."""

    name: str                        # its key in backends.registry.SPECS
    precision: str                   # "fp32", "fp16", "bf16", "int8": what runs
    attributes: tuple[str, ...]      # the order of the transformer's alphas
    device: torch.device             # where every stage's output lives
    folder: Path
    manifest: dict[str, Any]
    fallback: "Backend | None" = None    # runs the stages this backend's folder lacks
    note: str | None = None              # told to the user once it is open

    @classmethod
    def open(cls, *, bundle, precision: str | None, device: str, folders: dict[str, Path],
             threads: int | None, cuda_graphs: bool) -> "Backend":
        """The backend on `folders` ({"graphs" | "fallback" | "plans" | "compiled": path},
        as its spec's Needs names them)."""
        raise NotImplementedError

    @classmethod
    def needed(cls, folders: dict[str, Path], role: str, what: str) -> Path:
        """folders[role], or a UsageError saying what the backend runs from."""
        if role not in folders:
            argument = {"graphs": "onnx_dir", "plans": "engine_dir"}.get(role, role)
            raise UsageError(f"the {cls.name} backend runs {what} (`{argument}=`)")
        return folders[role]

    @property
    def spec(self):
        """Its declaration: precisions, devices, needs, capabilities (backends.registry)."""
        from vrfam_rt.backends.registry import SPECS

        return SPECS[self.name]

    @property
    def static_shapes(self) -> bool:
        """Each new batch size compiles: callers may pad to a few sizes."""
        return self.spec.static_shapes

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

    def stage_inputs(self, stage: str) -> dict[str, tuple]:
        """{input name: shape} of a stage's graph (None: a dynamic axis, the batch), from
        the manifest of the folder that runs it."""
        if stage not in self.manifest["files"] and self.fallback is not None:
            return self.fallback.stage_inputs(stage)
        entry = self._entry(stage, f"export it with `vrfam-rt export --components {stage}`")
        return {spec["name"]: tuple(None if isinstance(d, str) else d for d in spec["shape"])
                for spec in entry["inputs"]}

    def checked_run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        """`run`, once every input is a floating tensor of the stage's shape (the batch
        axis: the first input's), or a ShapeError naming the stage, the input, both shapes."""
        batch = None
        for (name, shape), x in zip(self.stage_inputs(stage).items(), inputs):
            check_input(stage, name, x, tuple(batch if d is None else d for d in shape))
            batch = x.shape[0]
        return self.run(stage, *inputs)

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def layer_times(self, inputs: dict[str, tuple[torch.Tensor, ...]]) -> list[dict]:
        """{"stage", "layer", "ms"} per layer of one run of each stage on `inputs`
        ({stage: its inputs}), measured by the runtime's own profiler (`vrfam-rt profile`)."""
        raise NotImplementedError

    def encoder(self, image: torch.Tensor) -> torch.Tensor:
        """image [B,3,S,S] in [-1,1] -> W+ [B,L,D]"""
        return self.checked_run("encoder", image)

    def transformer(self, wplus: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """W+ [B,L,D], alphas [B,K] -> edited W+ [B,L,D]"""
        return self.checked_run("transformer", wplus, alphas)

    def generator(self, wplus: torch.Tensor) -> torch.Tensor:
        """W+ [B,L,D] -> image [B,3,R,R], about [-1,1]"""
        return self.checked_run("generator", wplus)

