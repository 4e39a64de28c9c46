"""ffhq-1024: the networks have exactly the keys, shapes and sizes of the public files."""
import dataclasses

import pytest
import torch

from vrfam_rt import models
from vrfam_rt.config import load_config

pytestmark = pytest.mark.full


@pytest.fixture(scope="module")
def config():
    return load_config("ffhq-1024")


@pytest.fixture(scope="module")
def generator(config):
    return models.build(config, "generator")


@pytest.fixture(scope="module")
def encoder(config):
    return models.build(config, "encoder")


def shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_generator_has_171_keys_and_30370060_parameters(generator):
    s = shapes(generator)
    assert len(s) == 171 and n_params(generator) == 30_370_060
    assert s["style.1.weight"] == [512, 512] and s["style.8.bias"] == [512]
    assert "style.0.weight" not in s and "style.9.weight" not in s
    assert s["input.input"] == [1, 512, 4, 4]
    assert s["conv1.conv.weight"] == [1, 512, 512, 3, 3]
    assert s["conv1.conv.modulation.weight"] == [512, 512]
    assert s["conv1.noise.weight"] == [1] and s["conv1.activate.bias"] == [512]
    assert s["to_rgb1.conv.weight"] == [1, 3, 512, 1, 1] and s["to_rgb1.bias"] == [1, 3, 1, 1]
    assert "to_rgb1.upsample.kernel" not in s
    assert [k for k in s if k.endswith("blur.kernel")] == [
        f"convs.{i}.conv.blur.kernel" for i in range(0, 16, 2)]
    assert s["convs.15.conv.weight"] == [1, 32, 32, 3, 3]
    assert s["convs.14.conv.weight"] == [1, 32, 64, 3, 3]
    assert s["convs.14.conv.modulation.weight"] == [64, 512]
    assert s["to_rgbs.7.conv.weight"] == [1, 3, 32, 1, 1]
    assert s["to_rgbs.7.upsample.kernel"] == [4, 4]
    assert "to_rgbs.8.bias" not in s
    noise = [s[f"noises.noise_{i}"] for i in range(17)]
    assert noise[0] == [1, 1, 4, 4] and noise[1] == noise[2] == [1, 1, 8, 8]
    assert noise[15] == noise[16] == [1, 1, 1024, 1024]


def test_generator_renders_1024(generator):
    with torch.no_grad():
        img = generator(torch.randn(1, 18, 512))
    assert img.shape == (1, 3, 1024, 1024) and torch.isfinite(img).all()


def test_e4e_encoder_has_621_keys_and_267136704_parameters(encoder):
    net = encoder.encoder
    s = shapes(net)
    assert len(s) == 621 and n_params(net) == 267_136_704
    assert s["input_layer.0.weight"] == [64, 3, 3, 3] and "input_layer.0.bias" not in s
    assert s["input_layer.1.running_var"] == [64] and s["input_layer.2.weight"] == [64]
    assert [k for k in s if k.endswith("shortcut_layer.0.weight")] == [
        "body.3.shortcut_layer.0.weight", "body.7.shortcut_layer.0.weight",
        "body.21.shortcut_layer.0.weight"]
    assert s["body.3.shortcut_layer.0.weight"] == [128, 64, 1, 1]
    assert s["body.23.res_layer.5.fc1.weight"] == [32, 512, 1, 1]
    assert s["body.23.res_layer.5.fc2.weight"] == [512, 32, 1, 1]
    assert s["body.0.res_layer.3.weight"] == [64, 64, 3, 3]
    assert "body.24.res_layer.0.weight" not in s
    assert sorted(k for k in s if k.startswith("styles.0.convs")) == sorted(
        f"styles.0.convs.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias"))
    assert "styles.3.convs.8.weight" in s and "styles.3.convs.10.weight" not in s
    assert "styles.17.convs.10.weight" in s and "styles.18.linear.weight" not in s
    assert s["styles.17.linear.weight"] == [512, 512]
    assert s["latlayer1.weight"] == [512, 256, 1, 1] and s["latlayer2.weight"] == [512, 128, 1, 1]
    assert list(encoder.state_dict()) == ["latent_avg"] + [f"encoder.{k}" for k in s]


def test_encoder_pyramid_and_codes_at_256(encoder):
    with torch.no_grad():
        c1, c2, c3 = encoder.encoder.features(torch.randn(1, 3, 256, 256))
        codes = encoder(torch.randn(2, 3, 256, 256))
    assert (c1.shape, c2.shape, c3.shape) == (
        (1, 128, 64, 64), (1, 256, 32, 32), (1, 512, 16, 16))
    assert codes.shape == (2, 18, 512)


def test_arcface_has_397_keys_and_43797696_parameters(config):
    arc = models.build(config, "identity")
    s = shapes(arc)
    assert len(s) == 397 and n_params(arc) == 43_797_696
    assert s["output_layer.0.running_mean"] == [512]
    assert s["output_layer.3.weight"] == [512, 25088] and s["output_layer.3.bias"] == [512]
    assert s["output_layer.4.weight"] == [512]
    with torch.no_grad():
        emb = arc(torch.rand(2, 3, 256, 256) * 2 - 1)
    assert emb.shape == (2, 512) and torch.allclose(emb.norm(dim=1), torch.ones(2))


def test_latent_networks_of_the_released_files(config):
    clf = models.build(config, "classifier")
    assert shapes(clf) == {"fcs.0.weight": [2048, 9216], "fcs.0.bias": [2048],
                           "fcs.1.weight": [512, 2048], "fcs.1.bias": [512],
                           "fcs.2.weight": [40, 512], "fcs.2.bias": [40]}
    linear = dataclasses.replace(config.transformer, method="linear", attributes=("Smiling",))
    t = models.build(config.replace(transformer=linear), "transformer")
    s = shapes(t.transforms["Smiling"])
    assert len(s) == 36 and s["dense.17.weight"] == [512, 512] and s["dense.0.bias"] == [512]
    d = shapes(models.build(config, "discriminator"))
    assert list(d) == [f"mlp.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")]
    assert d["mlp.6.weight"] == [1, 512]
