"""Latent classifier, both transformer forms, fused sequential editing, discriminator."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from vrfam_rt import models
from vrfam_rt.config import load_config


def transformer(method="nonlinear", attributes=("Smiling", "Eyeglasses", "Male")):
    config = load_config("tiny")
    t_config = dataclasses.replace(config.transformer, method=method, attributes=attributes)
    torch.manual_seed(0)
    return models.build(config.replace(transformer=t_config), "transformer")


@pytest.mark.parametrize("method", ["linear", "nonlinear"])
def test_zero_alphas_leave_wplus_untouched(method):
    t = transformer(method)
    w = torch.randn(4, 10, 64)
    with torch.no_grad():
        assert torch.equal(t(w, torch.zeros(4, 3)), w)


@pytest.mark.parametrize("method", ["linear", "nonlinear"])
def test_only_the_edited_layers_change(method):
    t = transformer(method)
    w = torch.randn(2, 10, 64)
    with torch.no_grad():
        out = t(w, torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.5, 0.0]]))
    assert torch.equal(out[:, 6:], w[:, 6:])
    assert (out[:, :6] - w[:, :6]).abs().amax(dim=(1, 2)).min() > 0


def test_several_alphas_are_applied_one_after_another_in_attribute_order():
    t = transformer()
    w = torch.randn(3, 10, 64)
    alphas = torch.tensor([[1.0, 0.5, 0.0], [0.0, -1.0, 1.5], [0.3, 0.0, 0.7]])
    with torch.no_grad():
        out = t(w, alphas)
        expected = w.clone()
        for b in range(3):
            for k, attr in enumerate(t.attributes):
                edited = expected[b:b + 1, :6]
                f = t.transforms[attr](edited)
                expected[b:b + 1, :6] = edited + alphas[b, k] * f
    assert torch.allclose(out, expected, atol=1e-6)


def test_edit_applies_one_attribute_to_the_whole_batch():
    t = transformer()
    w = torch.randn(2, 10, 64)
    with torch.no_grad():
        assert torch.equal(t.edit(w, "Eyeglasses", 0.8), t(w, torch.tensor([[0, 0.8, 0]] * 2)))


def test_released_linear_form_is_w_plus_alpha_times_a_dense_map_per_layer():
    """T(w) = w + a * (w_i @ (W_i/sqrt(512))^T + b_i), layers [0, 6) at tiny."""
    t = transformer("linear", ("Smiling",))
    with torch.no_grad():
        for p in t.parameters():
            p.normal_()
    edit = t.transforms["Smiling"]
    w = torch.randn(2, 10, 64)
    with torch.no_grad():
        out = t(w, torch.full((2, 1), 1.25))
        for i in range(10):
            d = edit.dense[i]
            f_i = F.linear(w[:, i], d.weight / math.sqrt(64), d.bias)
            expected = w[:, i] + 1.25 * f_i if i < 6 else w[:, i]
            assert torch.allclose(out[:, i], expected, atol=1e-5)


def test_nonlinear_form_is_a_three_layer_mlp_per_layer():
    t = transformer("nonlinear", ("Smiling",))
    edit = t.transforms["Smiling"]
    w = torch.randn(2, 10, 64)
    i = 4
    h = F.leaky_relu(F.linear(w[:, i], edit.fc0.weight[i], edit.fc0.bias[i]), 0.2)
    h = F.leaky_relu(F.linear(h, edit.fc1.weight[i], edit.fc1.bias[i]), 0.2)
    f = F.linear(h, edit.fc2.weight[i], edit.fc2.bias[i])
    with torch.no_grad():
        assert torch.allclose(t(w, torch.ones(2, 1))[:, i], w[:, i] + f, atol=1e-5)


def test_mixed_forms_in_one_fused_transformer():
    config = load_config("tiny")
    t = models.build(config, "transformer", {"Smiling": "linear"})
    assert t.methods["Smiling"] == "linear" and t.methods["Eyeglasses"] == "nonlinear"
    assert "transforms.Smiling.dense.9.weight" in t.state_dict()
    assert "transforms.Eyeglasses.fc2.weight" in t.state_dict()


def test_classifier_is_lcnet_on_flattened_wplus():
    config = load_config("tiny")
    clf = models.build(config, "classifier")
    w = torch.randn(3, 10, 64)
    x = F.leaky_relu(clf.fcs[0](w.reshape(3, -1)), 0.2)
    x = F.leaky_relu(clf.fcs[1](x), 0.2)
    with torch.no_grad():
        assert torch.allclose(clf(w), clf.fcs[2](x), atol=1e-6)
    assert clf(w).shape == (3, 40) and clf.attributes[31] == "Smiling"


def test_latent_discriminator_scores_each_code():
    d = models.LatentDiscriminator(64)
    assert d(torch.randn(5, 64)).shape == (5, 1)
    assert isinstance(d.mlp[1], torch.nn.LeakyReLU) and d.mlp[1].negative_slope == 0.2
