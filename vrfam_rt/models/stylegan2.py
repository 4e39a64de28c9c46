"""StyleGAN2 generator whose parameter names are the keys of the public checkpoints.

Pure PyTorch: the reference's custom CUDA ops (fused bias+leaky-ReLU, upfirdn2d) are
written as the plain operations they compute, and the FIR filters of blur and
upsampling are depthwise (transposed) convolutions over the checkpoint's kernel
buffers, so whatever kernel a file carries is the kernel that runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vrfam_rt.config import GeneratorConfig
from vrfam_rt.contract import check_input

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8
FP16_CONV_CLAMP = 256.0        # activation clamp of the FP16 generator (StyleGAN2-ADA)
# How each precision computes the generator (its call arguments, see Generator.forward):
# one policy for the eager backend and the exported graphs. FP16 takes the non-fused,
# unfolded form, whose weights and styles are scaled to max 1 before demodulation (every
# intermediate far inside float16's range), and clamps every activation.
PRECISION_FORMS = {
    "fp32": {},
    "bf16": {},                # float32's exponent range: nothing to guard
    "fp16": {"fused": False, "folded": False, "conv_clamp": FP16_CONV_CLAMP},
}


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """leaky_relu(x + bias, 0.2) * sqrt(2); bias [C] is added along dim 1 of x [B,C,...]."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), LRELU_SLOPE) * LRELU_GAIN


def fir_kernel(taps: tuple[int, ...], gain: float) -> torch.Tensor:
    """Separable 2-D FIR kernel [k,k] from 1-D taps, normalised to sum `gain`."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = k[:, None] * k[None, :]
    return k2 / k2.sum() * gain


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,D] -> [B,D]
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: y = x @ (W*lr_mul/sqrt(in))^T + b*lr_mul."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))  # [out,in]
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))      # [out]
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,in] -> [B,out]
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    """upfirdn2d(x, kernel, pad) with up = down = 1, as one depthwise convolution."""

    def __init__(self, taps: tuple[int, ...], pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(taps, gain))  # [k,k]
        self.pad = pad

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        # [B,C,H,W] -> [B,C,H+p0+p1-k+1,...], plus an optional per-channel bias [C]
        channels = x.shape[1]
        # upfirdn2d convolves (flipped kernel); conv2d correlates.
        weight = self.kernel.flip([0, 1])[None, None].expand(channels, 1, -1, -1)
        p0, p1 = self.pad
        if p0 == p1:
            return F.conv2d(x, weight, bias, padding=p0, groups=channels)
        return F.conv2d(F.pad(x, [p0, p1, p0, p1]), weight, bias, groups=channels)


class Upsample(nn.Module):
    """upfirdn2d(x, kernel, up=2, pad) as one depthwise transposed convolution.

    Zero insertion + padding (p0, p0-1) + convolution with a k-tap kernel equals
    conv_transpose2d(stride 2, padding k-1-p0) with the unflipped kernel.
    """

    def __init__(self, taps: tuple[int, ...]):
        super().__init__()
        if len(taps) % 2:
            raise ValueError("upsampling needs an even number of FIR taps")
        self.register_buffer("kernel", fir_kernel(taps, 4.0))  # [k,k], gain factor^2
        pad0 = (len(taps) - 2 + 1) // 2 + 1
        self.padding = len(taps) - 1 - pad0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,C,H,W] -> [B,C,2H,2W]
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype)[None, None].expand(channels, 1, -1, -1)
        return F.conv_transpose2d(x, weight, stride=2, padding=self.padding, groups=channels)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution, in the grouped (fused) or the non-fused form.

    Both compute conv(x, W') with W'[b,o,i] = scale * W[o,i] * s[b,i], demodulated by
    rsqrt(sum_{i,kh,kw} W'^2 + 1e-8). The fused form builds W' per sample and runs a
    grouped conv (groups = B), as the reference does. The non-fused form scales the
    input by s and the output by the demodulation coefficients, so the weights stay
    constants (what ONNX and TensorRT want). When demodulating, it also divides W by
    max|W| and s by max_i|s| first: demodulation cancels both scales, and every
    intermediate then stays far inside the FP16 range.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = len(blur_kernel) - 2 - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor, fused: bool = False) -> torch.Tensor:
        # x [B,I,H,W], style [B,D] -> [B,O,H',W'] (H' = 2H when upsampling)
        s = self.modulation(style)                                   # [B,I]
        out = self._fused(x, s) if fused else self._nonfused(x, s)
        return self.blur(out) if self.upsample else out

    def _fused(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        batch, in_ch, height, width = x.shape
        _, out_ch, _, k, _ = self.weight.shape
        w = self.scale * self.weight * s.view(batch, 1, in_ch, 1, 1)  # [B,O,I,k,k]
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum([2, 3, 4]) + DEMOD_EPS).view(batch, out_ch, 1, 1, 1)
        x = x.reshape(1, batch * in_ch, height, width)
        if self.upsample:
            w = w.transpose(1, 2).reshape(batch * in_ch, out_ch, k, k)
            out = F.conv_transpose2d(x, w, stride=2, padding=0, groups=batch)
        else:
            w = w.reshape(batch * out_ch, in_ch, k, k)
            out = F.conv2d(x, w, padding=self.padding, groups=batch)
        return out.view(batch, out_ch, out.shape[-2], out.shape[-1])

    def _nonfused(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        w = self.scale * self.weight[0]                              # [O,I,k,k]
        if self.demodulate:
            w = w / w.abs().max()
            s = s / s.abs().amax(dim=1, keepdim=True)
        x = x * s[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=0)
        else:
            out = F.conv2d(x, w, padding=self.padding)
        if self.demodulate:
            # sum_{i,kh,kw} (w*s)^2 = s^2 @ sum_{kh,kw} w^2, one [B,I]x[I,O] matmul
            d = torch.rsqrt(s.square() @ w.square().sum([2, 3]).t() + DEMOD_EPS)  # [B,O]
            out = out * d[:, :, None, None]
        return out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise  # noise [1,1,H,W] broadcasts over batch and channels


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, clamp: float | None = None) -> torch.Tensor:
        out = fused_leaky_relu(x, self.bias)
        return out if clamp is None else out.clamp(-clamp, clamp)


class StyledConv(nn.Module):
    """modulated conv -> constant noise -> bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool,
                 blur_kernel: tuple[int, ...]):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise, fused: bool = False, folded: bool = False,
                clamp: float | None = None):
        if folded and not torch.is_grad_enabled():
            return self._folded(x, style, noise, clamp)
        return self.activate(self.noise(self.conv(x, style, fused), noise), clamp)

    def _folded(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor,
                clamp: float | None) -> torch.Tensor:
        """The same layer for inference with every per-channel factor inside the weights.

        Per sample, the style, demodulation and the sqrt(2) gain of the activation scale
        one constant convolution (leaky ReLU is positively homogeneous, so the gain can
        go before it) and the bias rides on the convolution (or on the blur after an
        upsampling one). What is left over the feature map is one in-place noise add and
        one in-place leaky ReLU, instead of six full passes. At batch 1 on a CPU, where
        the 1024^2 layers are bound by memory traffic, that is most of their time.
        """
        conv = self.conv
        s = conv.modulation(style)                                   # [B,I]
        w = conv.scale * LRELU_GAIN * conv.weight * s[:, None, :, None, None]  # [B,O,I,k,k]
        if conv.demodulate:
            w = w * torch.rsqrt((w / LRELU_GAIN).pow(2).sum([2, 3, 4]) + DEMOD_EPS)[..., None, None, None]
        bias = self.activate.bias * LRELU_GAIN
        outs = []
        for b in range(x.shape[0]):
            if conv.upsample:
                out = F.conv_transpose2d(x[b:b + 1], w[b].transpose(0, 1), stride=2)
                out = conv.blur(out, bias)
            else:
                out = F.conv2d(x[b:b + 1], w[b], bias, padding=conv.padding)
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        out.add_(noise, alpha=float(self.noise.weight) * LRELU_GAIN)
        F.leaky_relu_(out, LRELU_SLOPE)
        return out if clamp is None else out.clamp_(-clamp, clamp)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, plus the upsampled skip.

    The RGB result and the skip sum are float32 whatever the layer's dtype, so a
    half-precision generator still accumulates its image in full precision.
    """

    def __init__(self, in_ch: int, style_dim: int, upsample: bool, blur_kernel: tuple[int, ...]):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None, fused: bool = False, clamp: float | None = None):
        # x [B,C,H,W], skip [B,3,H/2,W/2] -> [B,3,H,W]
        out = self.conv(x, style, fused) + self.bias
        if clamp is not None:
            out = out.clamp(-clamp, clamp)
        out = out.float()
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class Generator(nn.Module):
    """Mapping network + synthesis network; `forward` renders W+ with constant noise."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        dim, taps = config.style_dim, config.blur_kernel
        widths = [config.latent_dim] + [dim] * config.n_mlp
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(widths[i], dim, lr_mul=lr, activation=True)
            for i, lr in enumerate(config.layer_lr)])
        if config.w_avg:
            self.register_buffer("w_avg", torch.zeros(dim))  # [D] tracked mean W
        ch4 = config.channel(4)
        self.input = ConstantInput(ch4)
        self.conv1 = StyledConv(ch4, ch4, dim, upsample=False, blur_kernel=taps)
        self.to_rgb1 = ToRGB(ch4, dim, upsample=False, blur_kernel=taps)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        in_ch = ch4
        for log_res in range(3, config.log_size + 1):
            out_ch = config.channel(2**log_res)
            self.convs.append(StyledConv(in_ch, out_ch, dim, upsample=True, blur_kernel=taps))
            self.convs.append(StyledConv(out_ch, out_ch, dim, upsample=False, blur_kernel=taps))
            self.to_rgbs.append(ToRGB(out_ch, dim, upsample=True, blur_kernel=taps))
            in_ch = out_ch
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))

    @property
    def num_layers(self) -> int:
        """Number of styled convolutions (each takes one noise buffer)."""
        return 2 * self.config.log_size - 3

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    def mapping(self, z: torch.Tensor) -> torch.Tensor:  # z [B,Z] -> w [B,D]
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """The truncation centre [1,D]: the tracked mean W the file carries (config.w_avg),
        else the mean of mapping(z) over n seeded standard-normal z."""
        if self.config.w_avg:
            return self.w_avg[None].clone()
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.config.latent_dim, generator=gen)
        return self.mapping(z.to(self.input.input.device)).mean(0, keepdim=True)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """Truncation towards the centre: centre + psi * (w - centre), w [B,...,D]."""
        return torch.lerp(self.mean_latent().to(w.dtype), w, psi)

    def forward(self, wplus: torch.Tensor, fused: bool = False, folded: bool = False,
                conv_clamp: float | None = None) -> torch.Tensor:
        """W+ [B,L,D] -> image [B,3,size,size], about [-1,1].

        How it computes, as arguments (the same weights serve every form):
        fused: the grouped modulated convolution of the reference (per-sample weights);
            off, the non-fused form whose weights are constants (what ONNX, TensorRT and
            FP16 want).
        folded: inference without autograd folds the per-channel factors into
            per-sample weights (StyledConv._folded); ignored while autograd records.
        conv_clamp: clamp every activation and ToRGB output to [-conv_clamp, conv_clamp]
            (256 for FP16, as StyleGAN2-ADA does), or not; a network trained with a clamp
            (config.conv_clamp) keeps it, the tighter of the two applies.
        """
        check_input("generator", "wplus", wplus, (None, self.n_latent, self.config.style_dim))
        clamps = [c for c in (conv_clamp, self.config.conv_clamp) if c is not None]
        conv_clamp = min(clamps) if clamps else None
        batch = wplus.shape[0]
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        conv = {"fused": fused, "folded": folded, "clamp": conv_clamp}
        rgb = {"fused": fused, "clamp": conv_clamp}
        out = self.conv1(self.input(batch), wplus[:, 0], noise[0], **conv)
        skip = self.to_rgb1(out, wplus[:, 1], **rgb)
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, wplus[:, 2 * k + 1], noise[2 * k + 1], **conv)
            out = self.convs[2 * k + 1](out, wplus[:, 2 * k + 2], noise[2 * k + 2], **conv)
            skip = to_rgb(out, wplus[:, 2 * k + 3], skip, **rgb)
        return skip
