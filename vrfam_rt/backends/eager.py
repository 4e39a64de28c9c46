"""The eager PyTorch backend: the bundle's own networks, CPU or CUDA."""
from __future__ import annotations

import copy

import torch

from vrfam_rt.backends import Backend
from vrfam_rt.errors import VrfamError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class EagerBackend(Backend):
    name = "eager"

    def __init__(self, bundle, device: str = "cpu", precision: str = "fp32"):
        if precision not in DTYPES:
            raise VrfamError(f"the eager backend runs {sorted(DTYPES)}, not {precision!r}")
        if precision == "fp16" and not str(device).startswith("cuda"):
            raise VrfamError("eager fp16 needs a CUDA device (float16 convolutions on the CPU "
                             "are hundreds of times slower); use bf16 on the CPU")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise VrfamError(f"device {device!r} asked for, but torch sees no CUDA device")
        self.bundle, self.device, self.precision = bundle, torch.device(device), precision
        self.dtype = DTYPES[precision]
        self.attributes = tuple(bundle.attributes)
        self._modules: dict[str, torch.nn.Module] = {}

    def _module(self, stage: str) -> torch.nn.Module:
        if stage not in self._modules:
            module = self.bundle.component(stage)
            if self.dtype != torch.float32 or self.device.type != "cpu":
                module = copy.deepcopy(module).to(self.device, self.dtype)
            self._modules[stage] = module.eval()
        return self._modules[stage]

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        module = self._module(stage)
        with torch.inference_mode():
            return module(*(x.to(self.device, self.dtype) for x in inputs)).float()
