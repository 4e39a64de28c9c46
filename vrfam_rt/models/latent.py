"""Networks on W+ codes: latent classifier, latent transformers, latent discriminator."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vrfam_rt.config import TransformerConfig
from vrfam_rt.contract import check_input


class LatentClassifier(nn.Module):
    """LCNet: flattened W+ -> Linear/LeakyReLU(0.2) stack -> attribute logits.

    forward: [B,L,D] -> [B,A] (logits; sigmoid gives the attribute probabilities).
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], attributes: tuple[str, ...]):
        super().__init__()
        self.attributes = tuple(attributes)
        widths = (in_dim, *hidden, len(attributes))
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, wplus: torch.Tensor) -> torch.Tensor:
        x = wplus.flatten(1)
        for fc in self.fcs[:-1]:
            x = F.leaky_relu(fc(x), 0.2)
        return self.fcs[-1](x)


def layerwise_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [B,n,in], weight [n,out,in] -> [B,n,out]: layer i of every sample times weight[i].

    One batched matmul over the n layers; broadcasting x [B,n,1,in] against the weights
    instead would copy them B times (20x slower on a CPU at batch 32, in training too).
    """
    return torch.bmm(x.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1)


class DenseLayer(nn.Module):
    """Equalized-lr linear map of the released F_mapping: x @ (W*lr_mul/sqrt(in))^T + b."""

    def __init__(self, dim: int, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, dim).div_(lr_mul))  # [out,in]
        self.bias = nn.Parameter(torch.zeros(dim))
        self.scale = lr_mul / math.sqrt(dim)


class LinearEdit(nn.Module):
    """The released latent transformer (F_mapping): one dense map per W+ layer, f(w)_i = dense_i(w_i).

    Keys `dense.{0..L-1}.*` as in `tnet_<idx>.pth.tar`; only `layers` are computed
    because only those are edited.
    """

    def __init__(self, n_latent: int, dim: int, layers: tuple[int, int]):
        super().__init__()
        self.dense = nn.ModuleList(DenseLayer(dim) for _ in range(n_latent))
        self.layers = layers

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # [B,n,D] (edited layers) -> [B,n,D]
        start, stop = self.layers
        dense = self.dense[start:stop]
        weight = torch.stack([d.weight * d.scale for d in dense])      # [n,D,D]
        bias = torch.stack([d.bias for d in dense])                    # [n,D]
        return layerwise_matmul(w, weight) + bias


class LayerwiseLinear(nn.Module):
    """n independent linear maps applied to n W+ layers at once: [B,n,in] -> [B,n,out]."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, out_dim, in_dim) / math.sqrt(in_dim))
        self.bias = nn.Parameter(torch.zeros(n, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layerwise_matmul(x, self.weight) + self.bias


class NonlinearEdit(nn.Module):
    """The paper's nonlinear f: per edited layer, a 3-layer MLP with LeakyReLU(0.2)."""

    def __init__(self, dim: int, hidden: int, layers: tuple[int, int]):
        super().__init__()
        n = layers[1] - layers[0]
        self.fc0 = LayerwiseLinear(n, dim, hidden)
        self.fc1 = LayerwiseLinear(n, hidden, hidden)
        self.fc2 = LayerwiseLinear(n, hidden, dim)
        self.layers = layers

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # [B,n,D] -> [B,n,D]
        h = F.leaky_relu(self.fc0(w), 0.2)
        h = F.leaky_relu(self.fc1(h), 0.2)
        return self.fc2(h)


class FusedTransformer(nn.Module):
    """All attribute transformers of a bundle, applied one after another.

    T_k(w, a) = w + a * f_k(w) on the edited layers [start, stop), w elsewhere.
    forward: wplus [B,L,D], alphas [B,K] in `attributes` order -> [B,L,D]. A zero
    alpha leaves W+ exactly as it was for that attribute.
    """

    def __init__(self, config: TransformerConfig, n_latent: int, dim: int,
                 methods: dict[str, str] | None = None):
        super().__init__()
        self.attributes = tuple(config.attributes)
        self.layers = tuple(config.layers)
        self.methods = {a: (methods or {}).get(a, config.method) for a in self.attributes}
        self.transforms = nn.ModuleDict({
            a: LinearEdit(n_latent, dim, self.layers) if m == "linear"
            else NonlinearEdit(dim, config.hidden, self.layers)
            for a, m in self.methods.items()})

    def forward(self, wplus: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        check_input("transformer", "wplus", wplus, (None, None, None))
        check_input("transformer", "alphas", alphas, (wplus.shape[0], len(self.attributes)))
        start, stop = self.layers
        edited = wplus[:, start:stop]                                  # [B,n,D]
        for k, attr in enumerate(self.attributes):
            edited = edited + alphas[:, k, None, None] * self.transforms[attr](edited)
        return torch.cat([wplus[:, :start], edited, wplus[:, stop:]], dim=1)

    def edit(self, wplus: torch.Tensor, attr: str, alpha: float) -> torch.Tensor:
        """One attribute T_attr(w, alpha) for every sample: [B,L,D] -> [B,L,D]."""
        alphas = torch.zeros(wplus.shape[0], len(self.attributes), dtype=wplus.dtype,
                             device=wplus.device)
        alphas[:, self.attributes.index(attr)] = alpha
        return self(wplus, alphas)


class LatentDiscriminator(nn.Module):
    """e4e's LatentCodesDiscriminator: w [B,D] -> realness logit [B,1]."""

    def __init__(self, dim: int = 512, n_mlp: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_mlp - 1):
            layers += [nn.Linear(dim, dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.mlp(w)
