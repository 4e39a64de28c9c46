"""The ONNX I/O contract every stage keeps (shared/ARCHITECTURE.md), in one place.

| stage       | inputs                          | outputs               |
| encoder     | image [B,3,S,S] in [-1,1]       | wplus [B,L,D]         |
| transformer | wplus [B,L,D], alphas [B,K]     | wplus_edited [B,L,D]  |
| generator   | wplus [B,L,D]                   | image [B,3,R,R]       |

S is the encoder's input size, L the number of W+ codes, D the style dimension,
K the bundle's attribute count (in its order), R the generator's resolution. Graph
I/O is float32 in every precision; B is dynamic in [1, max_batch]. Export, engines,
backends, calibration and benchmarks all take the names and shapes from here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vrfam_rt.config import ALPHA_LIMIT

STAGE_NAMES = ("encoder", "transformer", "generator")


@dataclass(frozen=True)
class Stage:
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


STAGES = {
    "encoder": Stage(("image",), ("wplus",)),
    "transformer": Stage(("wplus", "alphas"), ("wplus_edited",)),
    "generator": Stage(("wplus",), ("image",)),
}


def check_input(stage: str, name: str, tensor, shape: tuple) -> None:
    """Raise ShapeError unless `tensor` is a floating tensor of `shape` (None: any size
    on that axis), naming the stage and input; stylegan2-ada's assert_shape habit, with
    a message for the user who passed it."""
    from vrfam_rt.errors import ShapeError

    want = "[" + ",".join("B" if s is None else str(s) for s in shape) + "]"
    if not isinstance(tensor, torch.Tensor):
        raise ShapeError(f"{stage}: {name} must be a torch.Tensor {want}, not "
                         f"{type(tensor).__name__}")
    if tensor.dim() != len(shape) or any(s is not None and t != s
                                         for t, s in zip(tensor.shape, shape)):
        raise ShapeError(f"{stage}: {name} must be {want}, got {list(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ShapeError(f"{stage}: {name} must be a floating tensor, got {tensor.dtype}")


def shapes(config, n_attributes: int, batch: int | str = "B") -> dict[str, dict[str, tuple]]:
    """Each stage's input and output shapes for a model config: {stage: {name: shape}}."""
    g = config.generator
    size, res = config.encoder.input_size, g.size
    wplus = (batch, g.n_latent, g.style_dim)
    return {
        "encoder": {"image": (batch, 3, size, size), "wplus": wplus},
        "transformer": {"wplus": wplus, "alphas": (batch, n_attributes),
                        "wplus_edited": wplus},
        "generator": {"wplus": wplus, "image": (batch, 3, res, res)},
    }


def example_inputs(bundle, stage: str, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Seeded inputs of the contract's shapes: images in [-1,1], W+ near N(0,1), alphas
    uniform over the alpha range."""
    g = torch.Generator().manual_seed(batch)
    shape = shapes(bundle.config, len(bundle.attributes), batch)[stage]
    if stage == "encoder":
        return (torch.rand(shape["image"], generator=g) * 2 - 1,)
    wplus = torch.randn(shape["wplus"], generator=g)
    if stage == "transformer":
        return wplus, (torch.rand(shape["alphas"], generator=g) * 2 - 1) * ALPHA_LIMIT
    return (wplus,)
