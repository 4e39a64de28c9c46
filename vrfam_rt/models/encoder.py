"""e4e / pSp encoder: IR-SE backbone, feature pyramid and GradualStyle heads."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vrfam_rt.config import EncoderConfig
from vrfam_rt.contract import check_input
from vrfam_rt.models import irse
from vrfam_rt.models.stylegan2 import EqualLinear

COARSE_END = 3   # styles [0, 3) read the stride-16 map c3
MIDDLE_END = 7   # styles [3, 7) read p2 (stride 8); the rest read p1 (stride 4)


class GradualStyleBlock(nn.Module):
    """log2(spatial) stride-2 convs + LeakyReLU(0.01) down to 1x1, then EqualLinear."""

    def __init__(self, in_ch: int, out_ch: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_ch, out_ch)
        self.out_ch = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,C,s,s] -> [B,D]
        return self.linear(self.convs(x).view(-1, self.out_ch))


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear (align_corners) resize of x to y's size, plus y."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class StyleEncoder(nn.Module):
    """The encoder network of the e4e/pSp files (keys `encoder.*` without the prefix).

    forward: image [B,3,S,S] in [-1,1] -> codes [B,L,D], without latent_avg.
    """

    def __init__(self, config: EncoderConfig, n_styles: int, style_dim: int):
        super().__init__()
        self.config = config
        self.n_styles = n_styles
        c0, c1, c2, c3 = config.channels
        self.input_layer = irse.input_layer(c0)
        self.body = irse.body(config.units, config.channels)
        s16 = config.input_size // 16
        self.styles = nn.ModuleList()
        for j in range(n_styles):
            spatial = s16 if j < COARSE_END else 2 * s16 if j < MIDDLE_END else 4 * s16
            self.styles.append(GradualStyleBlock(c3, style_dim, spatial))
        self.latlayer1 = nn.Conv2d(c2, c3, 1)
        self.latlayer2 = nn.Conv2d(c1, c3, 1)
        self._taps = irse.stage_ends(config.units)[1:]  # ends of stages 2, 3, 4

    def features(self, x: torch.Tensor):
        """Pyramid levels c1 [B,c1,S/4,S/4], c2 [B,c2,S/8,S/8], c3 [B,c3,S/16,S/16]."""
        taps = []
        x = self.input_layer(x)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                taps.append(x)
        return taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.input_size
        check_input("encoder", "image", x, (None, 3, size, size))
        c1, c2, c3 = self.features(x)
        if self.config.mode == "psp":
            return self._psp(c1, c2, c3)
        return self._e4e(c1, c2, c3)

    def _psp(self, c1, c2, c3):
        p2 = upsample_add(c3, self.latlayer1(c2))
        p1 = upsample_add(p2, self.latlayer2(c1))
        levels = [c3] * COARSE_END + [p2] * (MIDDLE_END - COARSE_END) + [p1] * self.n_styles
        return torch.stack([style(f) for style, f in zip(self.styles, levels)], dim=1)

    def _e4e(self, c1, c2, c3):
        """w_i = w_0 + delta_i for i = 1..stage (the progressive stage); w_i = w_0 beyond."""
        stage = self.config.progressive_stage
        stage = self.n_styles - 1 if stage is None else min(stage, self.n_styles - 1)
        w0 = self.styles[0](c3)                                   # [B,D]
        rows, features = [w0], c3
        for i in range(1, self.n_styles):
            if i > stage:
                rows.append(w0)
                continue
            if i == COARSE_END:
                p2 = features = upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE_END:
                features = upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        return torch.stack(rows, dim=1)


class Encoder(nn.Module):
    """Image -> W+ as the bundle serves it: the encoder network plus `latent_avg`.

    Its state dict is the e4e/pSp file's `encoder.*` keys plus `latent_avg` [L,D].
    """

    def __init__(self, config: EncoderConfig, n_styles: int, style_dim: int):
        super().__init__()
        self.encoder = StyleEncoder(config, n_styles, style_dim)
        self.register_buffer("latent_avg", torch.zeros(n_styles, style_dim))

    @property
    def input_size(self) -> int:
        return self.encoder.config.input_size

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # [B,3,S,S] -> [B,L,D]
        return self.encoder(image) + self.latent_avg
