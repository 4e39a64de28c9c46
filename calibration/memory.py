"""How much memory an INT8 calibration needs, known before it starts.

Calibration runs one sample at a time through ONNX Runtime with every quantized op's
input and output made a graph output, so its peak is set by one sample's activations
at those ops and by the copies of the network's weights it holds at once (the torch
bundle, the loaded ONNX model, its augmented copy and the session's, the quantized
model). Both are counted on the meta device (no compute, no memory); the factors come
from the peaks measured with `/usr/bin/time -v` on random ffhq-1024 weights (2-core Xeon,
ONNX Runtime 1.32): encoder 1.0 GiB weights + 0.4 GiB activations took 4.4 GiB over
the bundle, generator 0.12 + 1.6 GiB took 4.0 GiB. The factors round those up.
"""
from __future__ import annotations

import torch

WEIGHT_COPIES = 4.5          # resident copies of the weights while one network calibrates
ACTIVATION_COPIES = 2.5      # one sample's quantized-op tensors: ORT's outputs + the collector's


def quantized_op_bytes(bundle, component: str) -> tuple[int, int]:
    """(weight bytes, bytes of one sample's inputs and outputs of its convolutions and
    matrix multiplies) of a network in float32."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from vrfam_rt.contract import example_inputs
    from vrfam_rt.export.lowering import policy_module

    ops = {torch.ops.aten.convolution.default, torch.ops.aten.addmm.default,
           torch.ops.aten.mm.default, torch.ops.aten.bmm.default}

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in ops:
                self.total += (args[0].numel() + out.numel()) * 4
            return out

    module = policy_module(bundle, component, "fp32")
    weights = {name: t.to("meta") for name, t in module.state_dict().items()}
    inputs = tuple(x.to("meta") for x in example_inputs(bundle, component, 1))
    with torch.no_grad(), Count() as count:
        torch.func.functional_call(module, weights, inputs)
    return sum(t.numel() * 4 for t in weights.values()), count.total


def bytes_needed(bundle, components) -> dict[str, int]:
    """Per network, the memory its calibration adds to the running process (bytes)."""
    need = {}
    for component in components:
        weights, activations = quantized_op_bytes(bundle, component)
        need[component] = int(WEIGHT_COPIES * weights + ACTIVATION_COPIES * activations)
    return need


def available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
