"""IR-SE50 ArcFace (model_ir_se50.pth) with the crop and pooling of the identity loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vrfam_rt.config import IdentityConfig
from vrfam_rt.models import irse


class ArcFace(nn.Module):
    """Face image -> unit-norm identity embedding.

    forward: image [B,3,S,S] in [-1,1], a generator-style face crop (S = 256 in the
    reference) -> [B,E]. Larger images are pooled to `crop_reference` first; the
    face box (rows 35:223, cols 32:220 of 256) scales with S; the crop is pooled to
    the network's input size (112) before `embed`.
    """

    def __init__(self, config: IdentityConfig):
        super().__init__()
        self.config = config
        c_last = config.channels[-1]
        side = config.input_size // 16
        self.input_layer = irse.input_layer(config.channels[0])
        self.body = irse.body(config.units, config.channels)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c_last), nn.Dropout(0.6), nn.Flatten(),
            nn.Linear(c_last * side * side, config.embed_dim), nn.BatchNorm1d(config.embed_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,input_size,input_size] -> L2-normalised [B,E]."""
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / torch.norm(x, 2, 1, True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        ref = self.config.crop_reference
        if image.shape[-1] > ref:
            image = F.adaptive_avg_pool2d(image, ref)
        scale = image.shape[-1] / ref
        r0, r1, c0, c1 = (round(v * scale) for v in self.config.crop)
        face = F.adaptive_avg_pool2d(image[:, :, r0:r1, c0:c1], self.config.input_size)
        return self.embed(face)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity <f(a), f(b)> per sample, [B]; the identity loss is 1 - this."""
        return (self(a) * self(b)).sum(dim=1)
