"""IR-SE residual backbone shared by the e4e/pSp encoder and ArcFace (IR-SE50)."""
from __future__ import annotations

import torch
from torch import nn

SE_REDUCTION = 16


class SEModule(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(avgpool(x)))))."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(channels // SE_REDUCTION, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,C,H,W] -> [B,C,H,W]
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class BottleneckIRSE(nn.Module):
    """BN-conv-PReLU-conv(stride)-BN-SE residual plus a (projected) shortcut."""

    def __init__(self, in_ch: int, depth: int, stride: int):
        super().__init__()
        if in_ch == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_ch, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,in,H,W] -> [B,depth,H/s,W/s]
        return self.res_layer(x) + self.shortcut_layer(x)


def input_layer(channels: int) -> nn.Sequential:
    """Stem: conv3x3 (no bias) -> BN -> PReLU, [B,3,H,W] -> [B,channels,H,W]."""
    return nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(channels), nn.PReLU(channels))


def body(units: tuple[int, ...], channels: tuple[int, ...]) -> nn.Sequential:
    """Stages of IR-SE units; the first unit of every stage has stride 2."""
    blocks, in_ch = [], channels[0]
    for n, depth in zip(units, channels):
        blocks.append(BottleneckIRSE(in_ch, depth, 2))
        blocks += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        in_ch = depth
    return nn.Sequential(*blocks)


def stage_ends(units: tuple[int, ...]) -> list[int]:
    """Index in `body` of the last unit of each stage (6, 20, 23 ... for IR-SE50)."""
    ends, total = [], 0
    for n in units:
        total += n
        ends.append(total - 1)
    return ends
