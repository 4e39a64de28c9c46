"""FP16 safety check on the CPU by emulation.

ONNX Runtime's CPU kernels compute FP16 graphs in float32, so they cannot show an
FP16 overflow. Instead the FP16 form of each network runs in PyTorch with its
weights, its inputs and the result of every torch operation rounded to float16.
(The emulation also rounds the few float32 islands of the FP16 graphs, so it is,
if anything, pessimistic.)
"""
from __future__ import annotations

import math

import torch
from torch.overrides import TorchFunctionMode

from vrfam_rt.bundle import Bundle
from vrfam_rt.contract import example_inputs
from vrfam_rt.export.lowering import policy_module


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


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    """PSNR in dB with the reference's value range as peak (2 for images in [-1,1])."""
    mse = (reference - other).double().pow(2).mean().item()
    peak = (reference.max() - reference.min()).item()
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def fp16_report(bundle: Bundle, components=("encoder", "transformer", "generator"),
                batch: int = 2) -> dict[str, dict]:
    """Emulated FP16 vs the FP32 network, per component, on seeded contract inputs.

    generator: PSNR of the image; encoder / transformer: W+ error relative to max|W+|
    (max_rel) and in L2 (rel_l2). `finite` is False if any inf/NaN appeared.
    """
    report = {}
    for component in components:
        inputs = example_inputs(bundle, component, batch)
        with torch.no_grad():
            reference = bundle.modules[component](*inputs)
        emulated = emulate_fp16(policy_module(bundle, component, "fp16"), *inputs)
        finite = bool(torch.isfinite(emulated).all())
        diff = (emulated - reference).abs()
        row = {"finite": finite,
               "max_abs": diff.max().item(),
               "max_rel": (diff.max() / reference.abs().max()).item(),
               "rel_l2": ((emulated - reference).norm() / reference.norm()).item()}
        if component == "generator":
            row["psnr_db"] = psnr(reference, emulated) if finite else -math.inf
        report[component] = row
    return report
