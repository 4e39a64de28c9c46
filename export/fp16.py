"""FP16 safety check on the CPU by emulation.

ONNX Runtime's CPU kernels compute FP16 graphs in float32, so they cannot show an
FP16 overflow. Instead the FP16 form of each network runs in PyTorch with its
weights, its inputs and the result of every torch operation rounded to float16.
(The emulation also rounds the few float32 islands of the FP16 graphs, so it is,
if anything, pessimistic.)
"""
from __future__ import annotations

import functools

import torch
from torch.overrides import TorchFunctionMode

from vrfam_rt.bundle import Bundle
from vrfam_rt.export.lowering import policy_module
from vrfam_rt.export.parity import against_eager


def _round(value):
    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        return value.half().float()
    if isinstance(value, (tuple, list)):
        return type(value)(_round(v) for v in value)
    return value


class Float16Rounding(TorchFunctionMode):
    """Round the float32 result of every torch operation to the nearest float16."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return _round(func(*args, **(kwargs or {})))


def emulate_fp16(module: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """Run `module` as a float16 network would: float16 weights, inputs and activations."""
    state = {name: _round(tensor) for name, tensor in module.state_dict().items()}
    with torch.no_grad(), Float16Rounding():
        return torch.func.functional_call(module, state, tuple(_round(x) for x in inputs))


def fp16_report(bundle: Bundle, components=("encoder", "transformer", "generator"),
                batch: int = 2) -> dict[str, dict]:
    """Emulated FP16 vs the FP32 network, per component, on seeded contract inputs.

    generator: PSNR of the image; encoder / transformer: W+ error relative to max|W+|
    (max_rel) and in L2 (rel_l2). `finite` is False if any inf/NaN appeared.
    """
    return {component: against_eager(bundle, component, batch, functools.partial(
                emulate_fp16, policy_module(bundle, component, "fp16")))
            for component in components}
