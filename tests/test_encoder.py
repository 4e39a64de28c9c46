"""e4e / pSp encoder forwards (shared/UPSTREAM.md section 2)."""
import dataclasses

import torch

from vrfam_rt import models
from vrfam_rt.config import load_config
from vrfam_rt.models.encoder import upsample_add


def encoder_with(**changes):
    config = load_config("tiny")
    config = config.replace(encoder=dataclasses.replace(config.encoder, **changes))
    torch.manual_seed(0)
    enc = models.build(config, "encoder")
    with torch.no_grad():
        enc.latent_avg.normal_()
    return enc


def test_codes_are_network_output_plus_latent_avg():
    enc = encoder_with()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(enc(x), enc.encoder(x) + enc.latent_avg)
        assert enc(x).shape == (2, 10, 64)


def test_e4e_stage_0_gives_one_shared_code():
    enc = encoder_with(progressive_stage=0)
    with torch.no_grad():
        codes = enc.encoder(torch.randn(2, 3, 64, 64))
    assert torch.equal(codes, codes[:, :1].expand_as(codes))


def test_e4e_adds_deltas_up_to_the_progressive_stage():
    full, staged = encoder_with(), encoder_with(progressive_stage=4)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = full.encoder(x), staged.encoder(x)
    assert torch.equal(a[:, :5], b[:, :5])           # w0 and deltas 1..4 agree
    assert torch.equal(b[:, 5:], b[:, :1].expand(1, 5, 64))
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_e4e_rows_are_w0_plus_the_head_of_each_pyramid_level():
    enc = encoder_with().encoder
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        c1, c2, c3 = enc.features(x)
        p2 = upsample_add(c3, enc.latlayer1(c2))
        p1 = upsample_add(p2, enc.latlayer2(c1))
        w0 = enc.styles[0](c3)
        codes = enc(x)
        assert torch.allclose(codes[:, 2], w0 + enc.styles[2](c3), atol=1e-6)
        assert torch.allclose(codes[:, 5], w0 + enc.styles[5](p2), atol=1e-6)
        assert torch.allclose(codes[:, 9], w0 + enc.styles[9](p1), atol=1e-6)


def test_psp_computes_every_style_independently():
    enc = encoder_with(mode="psp").encoder
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        c1, c2, c3 = enc.features(x)
        p2 = upsample_add(c3, enc.latlayer1(c2))
        p1 = upsample_add(p2, enc.latlayer2(c1))
        codes = enc(x)
        assert torch.allclose(codes[:, 0], enc.styles[0](c3))
        assert torch.allclose(codes[:, 6], enc.styles[6](p2))
        assert torch.allclose(codes[:, 7], enc.styles[7](p1))


def test_pyramid_strides_follow_the_input_size():
    enc = encoder_with(input_size=128).encoder
    with torch.no_grad():
        c1, c2, c3 = enc.features(torch.randn(1, 3, 128, 128))
    assert (c1.shape[-1], c2.shape[-1], c3.shape[-1]) == (32, 16, 8)
    assert len(enc.styles[0].convs) == 2 * 3 and len(enc.styles[9].convs) == 2 * 5


def test_upsample_add_is_align_corners_bilinear():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    out = upsample_add(x, torch.zeros(1, 1, 3, 3))
    assert torch.allclose(out[0, 0], torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.5, 2.0],
                                                   [2.0, 2.5, 3.0]]))
