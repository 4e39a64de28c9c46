"""Loss networks loaded from user-given weight files: LPIPS (perceptual) and ArcFace (identity).

Nothing here downloads or substitutes weights: a trainer that needs a term either gets
its file or the user switches the term off with the flag the error names.

LPIPS file layout (the public `lpips` package and torchvision, read with
torch.load(weights_only=True) or safetensors):
- linear heads `lin{0..4}.model.1.weight` [1,C_k,1,1] (lpips/weights/v0.1/alex.pth, vgg.pth);
- backbone `features.N.weight`/`.bias` in torchvision's AlexNet or VGG16 layout
  (alexnet-owt-*.pth, vgg16-*.pth; `classifier.*` keys are ignored).
Both may sit in one file, or the heads in --lpips-weights and the backbone in
--lpips-backbone. AlexNet vs VGG16 is read from `features.0.weight`'s shape.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vrfam_rt.errors import VrfamError, argument

# torchvision feature indices: conv layers (in, out, kernel, stride, pad) and the ReLU taps
ALEX = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
        8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)}
ALEX_POOLS, ALEX_TAPS = (2, 5), (1, 4, 7, 9, 11)
VGG_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG_TAPS = (3, 8, 15, 22, 29)
SHIFT = (-0.030, -0.088, -0.188)   # the lpips ScalingLayer on [-1,1] inputs
SCALE = (0.458, 0.448, 0.450)


def _features(net: str) -> tuple[nn.Sequential, tuple[int, ...]]:
    """Backbone up to the last tap, with torchvision's layer indices."""
    layers: list[nn.Module] = []
    if net == "alex":
        for i in range(ALEX_TAPS[-1] + 1):
            if i in ALEX:
                c_in, c_out, k, s, p = ALEX[i]
                layers.append(nn.Conv2d(c_in, c_out, k, s, p))
            elif i in ALEX_POOLS:
                layers.append(nn.MaxPool2d(3, 2))
            else:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers), ALEX_TAPS
    c_in = 3
    for width in VGG_WIDTHS:
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, width, 3, 1, 1), nn.ReLU()]
            c_in = width
    return nn.Sequential(*layers), VGG_TAPS


class LinearHead(nn.Module):
    """`lin{k}.model.1`: dropout then a 1x1 conv C -> 1 without bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """Learned perceptual distance: images [B,3,H,W] in [-1,1] (x2) -> [B]."""

    def __init__(self, net: str):
        super().__init__()
        self.features, self.taps = _features(net)
        widths = [self.features[t - 1].out_channels for t in self.taps]
        for k, c in enumerate(widths):
            self.add_module(f"lin{k}", LinearHead(c))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def _levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, out = (x - self.shift) / self.scale, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = 0
        for k, (fa, fb) in enumerate(zip(self._levels(a), self._levels(b))):
            head = getattr(self, f"lin{k}").model
            total = total + head((fa - fb).pow(2)).mean(dim=(1, 2, 3))
        return total


def read_weights(path: Path, option: str) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors or a plain PyTorch file (no pickled code); a
    missing file is named as the caller's argument `option`."""
    path = Path(path)
    if not path.is_file():
        raise VrfamError(f"{argument(option, path)}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(path)
    from vrfam_rt.importers.checkpoints import read_checkpoint
    state = read_checkpoint(path)
    state = state.get("state_dict", state)
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_lpips(weights: Path | None, backbone: Path | None) -> LPIPS:
    """LPIPS from the heads file (and a backbone file when the heads file lacks `features.*`)."""
    if weights is None:
        raise VrfamError("the perceptual loss needs LPIPS weights: give `lpips_weights=FILE` "
                         "(lin heads, e.g. lpips/weights/v0.1/alex.pth) and `lpips_backbone=FILE` "
                         "(torchvision alexnet/vgg16), or pass `perceptual=False`")
    state = read_weights(weights, "lpips_weights")
    if backbone is not None:
        state |= read_weights(backbone, "lpips_backbone")
    state = {k: v.float() for k, v in state.items() if k.startswith(("features.", "lin"))}
    first = state.get("features.0.weight")
    if first is None:
        raise VrfamError(f"{argument('lpips_weights', weights)} has no backbone ('features.*' "
                         "keys); give the torchvision AlexNet/VGG16 file as `lpips_backbone=FILE`")
    net = "alex" if first.shape[-1] == 11 else "vgg"
    module = LPIPS(net)
    expected = module.state_dict()
    state |= {k: expected[k] for k in ("shift", "scale")}
    missing = [k for k in expected if k not in state]
    if missing:
        raise VrfamError(f"LPIPS ({net}) weights lack '{missing[0]}'; `lpips_weights=FILE` holds "
                         "the lin heads, `lpips_backbone=FILE` the torchvision features")
    from vrfam_rt.bundle import load_state
    load_state(module, {k: state[k] for k in expected}, str(weights))
    return frozen(module)


def load_arcface(path: Path | None) -> nn.Module:
    """IR-SE50 ArcFace from a bare state dict (model_ir_se50.pth layout), frozen."""
    if path is None:
        raise VrfamError("the identity loss needs ArcFace weights: give `arcface=FILE` "
                         "(model_ir_se50.pth), or pass `identity=False`")
    from vrfam_rt import models
    from vrfam_rt.bundle import load_state
    from vrfam_rt.importers.checkpoints import identity_config

    state = read_weights(path, "arcface")
    module = models.ArcFace(identity_config(state, Path(path)))
    load_state(module, {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
               str(path), optional=("num_batches_tracked",))
    return frozen(module)


def frozen(module: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients (gradients still flow through its inputs)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def identity_loss(arcface: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean(1 - <R(a), R(b)>) over the batch (paper eq. 5 and 8)."""
    return (1 - arcface.similarity(a, b)).mean()


def nonsaturating(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss terms: -log D for real, -log(1 - D) for fake, as softplus."""
    return F.softplus(-logits if real else logits).mean()


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_w D(w)||^2 over real codes [B,D] (the R1 term of eq. 2, without gamma/2)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return grad.pow(2).sum(dim=1).mean()
