"""The StyleGAN2 generator: formulas of shared/UPSTREAM.md section 1."""
import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from numerics import rel_err
from vrfam_rt import models
from vrfam_rt.config import GeneratorConfig, load_config, stylegan2_channels
from vrfam_rt.models.stylegan2 import Blur, ModulatedConv2d, Upsample


def upfirdn2d(x, kernel, up, pad):
    """Zero insertion by `up`, zero padding (p0, p1), then true convolution with `kernel`."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = kernel.flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, groups=c)


def test_blur_is_upfirdn2d_with_pad_1_1():
    torch.manual_seed(0)
    blur = Blur((1, 3, 3, 1), pad=(1, 1), gain=4.0)
    blur.kernel.copy_(torch.rand(4, 4))           # an asymmetric kernel shows any flip error
    x = torch.randn(2, 5, 9, 9)                   # 2H+1 as after the stride-2 transposed conv
    assert torch.allclose(blur(x), upfirdn2d(x, blur.kernel, 1, (1, 1)), atol=1e-6)
    assert blur(x).shape[-1] == 8


def test_upsample_is_upfirdn2d_up2_pad_2_1():
    torch.manual_seed(0)
    up = Upsample((1, 3, 3, 1))
    up.kernel.copy_(torch.rand(4, 4))
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(up(x), upfirdn2d(x, up.kernel, 2, (2, 1)), atol=1e-6)
    assert up(x).shape[-2:] == (16, 16)


def test_upsample_kernel_is_normalised_outer_product_times_four():
    k = torch.tensor([1.0, 3, 3, 1])
    expected = k[:, None] * k[None, :] / 64 * 4
    assert torch.allclose(Upsample((1, 3, 3, 1)).kernel, expected)


@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (True, True, 3),
                                                    (False, False, 1)])
def test_fused_and_nonfused_modulated_conv_agree(upsample, demodulate, k):
    torch.manual_seed(1)
    conv = ModulatedConv2d(48, 32, k, 64, demodulate=demodulate, upsample=upsample)
    with torch.no_grad():
        conv.modulation.bias.normal_(1.0, 0.5)
    x, style = torch.randn(3, 48, 8, 8), torch.randn(3, 64)
    conv.fused = True
    fused = conv(x, style)
    conv.fused = False
    assert rel_err(conv(x, style), fused) < 1e-5


def test_modulated_conv_matches_the_per_sample_formula():
    """W' = scale*W*s, demodulated by rsqrt(sum W'^2 + 1e-8), convolved per sample."""
    torch.manual_seed(2)
    conv = ModulatedConv2d(16, 8, 3, 32)
    x, style = torch.randn(2, 16, 6, 6), torch.randn(2, 32)
    s = conv.modulation(style)
    outs = []
    for b in range(2):
        w = conv.weight[0] / math.sqrt(16 * 9) * s[b][None, :, None, None]
        w = w * torch.rsqrt(w.pow(2).sum([1, 2, 3], keepdim=True) + 1e-8)
        outs.append(F.conv2d(x[b:b + 1], w, padding=1))
    assert rel_err(conv(x, style), torch.cat(outs)) < 1e-5


def test_whole_generator_fused_equals_nonfused(tiny):
    g = tiny.generator
    w = torch.randn(3, g.n_latent, g.config.style_dim)
    with torch.no_grad():
        fused = g(w, fused=True)
        assert rel_err(g(w), fused) < 1e-5


def test_generator_renders_wplus_to_an_rgb_image_with_constant_noise(tiny):
    g = tiny.generator
    w = torch.randn(2, g.n_latent, g.config.style_dim)
    with torch.no_grad():
        a, b = g(w), g(w)
    assert a.shape == (2, 3, 64, 64)
    assert torch.equal(a, b)                      # noise comes from the buffers, not the RNG
    with torch.no_grad():
        single = g(w[1:])
    assert torch.allclose(single, a[1:], atol=1e-5)  # samples do not mix across the batch


def test_each_latent_row_drives_its_layer(tiny):
    """conv1 <- w0, to_rgb1 <- w1, convs[2k] <- w[2k+1], ..., to_rgbs[k] <- w[2k+3]."""
    g = tiny.generator
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = inputs[0]
        return hook

    hooks = [m.register_forward_hook(keep(name))
             for name, m in g.named_modules() if name.endswith("modulation")]
    w = torch.randn(1, g.n_latent, g.config.style_dim)
    with torch.no_grad():
        g(w)
    for h in hooks:
        h.remove()
    assert torch.equal(seen["conv1.conv.modulation"], w[:, 0])
    assert torch.equal(seen["to_rgb1.conv.modulation"], w[:, 1])
    last = len(g.to_rgbs) - 1
    assert torch.equal(seen[f"convs.{2 * last}.conv.modulation"], w[:, 2 * last + 1])
    assert torch.equal(seen[f"convs.{2 * last + 1}.conv.modulation"], w[:, 2 * last + 2])
    assert torch.equal(seen[f"to_rgbs.{last}.conv.modulation"], w[:, 2 * last + 3])


def test_mean_latent_is_the_mean_of_mapped_normal_samples(tiny):
    g = tiny.generator
    with torch.no_grad():
        mean = g.mean_latent(512, seed=3)
        z = torch.randn(512, g.config.style_dim, generator=torch.Generator().manual_seed(3))
        assert mean.shape == (1, g.config.style_dim)
        assert torch.allclose(mean, g.mapping(z).mean(0, keepdim=True))


def test_mapping_normalises_z_then_applies_equalized_lrelu_layers(tiny):
    g = tiny.generator
    z = torch.randn(4, g.config.style_dim)
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    for layer in g.style[1:]:
        scale = g.config.lr_mlp / math.sqrt(g.config.style_dim)
        x = F.leaky_relu(x @ (layer.weight * scale).t() + layer.bias * g.config.lr_mlp, 0.2) * 2**0.5
    with torch.no_grad():
        assert torch.allclose(g.mapping(z), x, atol=1e-5)


@pytest.mark.parametrize("size", [8, 32, 256])
def test_any_power_of_two_size_and_mapping_depth(size):
    config = GeneratorConfig(size=size, style_dim=32, n_mlp=3,
                             channels=tuple(min(c, 16) for c in stylegan2_channels(size)))
    g = models.Generator(config).eval()
    with torch.no_grad():
        img = g(torch.randn(1, config.n_latent, 32))
    assert img.shape == (1, 3, size, size)
    assert len(g.noises._buffers) == 2 * int(math.log2(size)) - 3
    assert sum(k.startswith("style.") and k.endswith(".weight") for k in g.state_dict()) == 3


def test_channel_table_of_config_f():
    assert stylegan2_channels(1024, 2) == (512, 512, 512, 512, 512, 256, 128, 64, 32)
    assert stylegan2_channels(256, 1) == (512, 512, 512, 512, 256, 128, 64)


def test_noise_buffer_sizes():
    g = models.Generator(load_config("tiny").generator)
    sizes = [g.noises._buffers[f"noise_{i}"].shape[-1] for i in range(g.num_layers)]
    assert sizes == [4, 8, 8, 16, 16, 32, 32, 64, 64]


def test_generator_rejects_a_non_power_of_two_size():
    from vrfam_rt.errors import VrfamError
    with pytest.raises(VrfamError, match="power of two"):
        dataclasses.replace(load_config("tiny").generator, size=48)


@pytest.mark.parametrize("clamp", [None, 0.5])
def test_folded_inference_equals_the_layers_and_training_ignores_it(tiny, clamp):
    generator = copy.deepcopy(tiny.component("generator")).eval()   # the fixture is shared
    for layer in (*generator.convs, generator.conv1):  # non-zero noise exercises that path
        layer.noise.weight.data.fill_(0.3)
    wplus = torch.randn(3, generator.n_latent, generator.config.style_dim)
    with torch.no_grad():
        reference = generator(wplus, conv_clamp=clamp)
        assert rel_err(generator(wplus, folded=True, conv_clamp=clamp), reference) < 1e-5
    # with autograd the unfolded layers run
    trained = generator(wplus.requires_grad_(), folded=True, conv_clamp=clamp)
    assert torch.equal(trained.detach(), generator(wplus, conv_clamp=clamp).detach())


def test_eager_fp16_computes_what_the_exported_fp16_graph_computes(tiny, monkeypatch):
    """fp16 is one computation: the eager backend's fp16 generator takes the exported fp16
    graph's form (non-fused, its normalisation before demodulation, activations clamped to
    256). Eager fp16 runs only on CUDA, so the backend is made for a CUDA device that is
    never used, and both forms run here in float32, where they must agree; a constant
    input scaled up drives activations past the clamp, so the clamp shows."""
    from vrfam_rt.backends.eager import EagerBackend
    from vrfam_rt.export.lowering import graph_form
    from vrfam_rt.models.stylegan2 import FP16_CONV_CLAMP, FusedLeakyReLU

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)   # the backend sets it
    eager_form = EagerBackend(tiny, device="cuda", precision="fp16").generator_form
    exported_form = graph_form("generator", "fp16")

    generator = copy.deepcopy(tiny.component("generator")).eval()
    generator.input.input.data *= 1e4          # conv1's output scales with its input
    peaks = []
    for module in generator.modules():
        if isinstance(module, FusedLeakyReLU):
            module.register_forward_hook(lambda m, i, out: peaks.append(out.abs().max().item()))
    wplus = torch.randn(2, generator.n_latent, generator.config.style_dim)
    with torch.no_grad():
        outputs = {}
        for name, form in (("eager", eager_form), ("exported", exported_form),
                           ("unclamped", {"fused": False})):
            peaks.clear()
            outputs[name] = generator(wplus, **form)
            assert peaks, name                 # the unfolded layers ran
            outputs[name + " peak"] = max(peaks)
    assert rel_err(outputs["eager"], outputs["exported"]) < 1e-6
    assert outputs["eager peak"] <= FP16_CONV_CLAMP
    assert outputs["exported peak"] <= FP16_CONV_CLAMP
    assert outputs["unclamped peak"] > 10 * FP16_CONV_CLAMP
    assert rel_err(outputs["eager"], outputs["unclamped"]) > 1e-2


def test_eager_fp32_and_bf16_keep_their_unclamped_forms(tiny):
    from vrfam_rt.backends.eager import EagerBackend

    for precision in ("fp32", "bf16"):
        form = EagerBackend(tiny, device="cpu", precision=precision).generator_form
        assert form == {"folded": True}, precision
