"""The generator distilled from the renderer: z -> face parameters, loss terms, CLI, resume."""
import json

import pytest
import torch

from train_helpers import same_weights, train, weights
from vrfam_rt import Bundle
from vrfam_rt.errors import VrfamError
from vrfam_rt.training.core import RunOptions, Ranks
from vrfam_rt.training.generator import DistillLoss, GeneratorTask, oracle_agreement
from vrfam_rt.synthetic.oracles import load_oracles
from vrfam_rt.synthetic.faces import (ATTRIBUTES, NOISE_DIMS, params_from_noise,
                                      params_from_uniforms, sample_params)

pytestmark = pytest.mark.usefixtures("one_thread")

TERMS = ("l1", "multiscale", "feature")


def same_params(a, b) -> bool:
    ta, tb = a.to_tensors(), b.to_tensors()
    return all(torch.equal(ta[k], tb[k]) for k in ta)


def test_sample_params_is_params_from_uniforms_of_its_own_draws():
    g = torch.Generator().manual_seed(7)
    identity, u, nuisance = torch.rand(5, 16, generator=g), torch.rand(5, 8, generator=g), \
        torch.rand(5, 16, generator=g)
    assert same_params(sample_params(5, seed=7), params_from_uniforms(identity, u, nuisance))


def test_params_from_noise_is_the_normal_cdf_through_the_same_thresholds():
    z = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    u = torch.special.ndtr(z[:, :NOISE_DIMS])
    expected = params_from_uniforms(u[:, :16], u[:, 16:24], u[:, 24:])
    assert same_params(params_from_noise(z), expected)
    assert same_params(params_from_noise(z), params_from_noise(z.clone()))
    extra = z.clone()
    extra[:, NOISE_DIMS:] = 0                      # dims past 40 draw nothing
    assert same_params(params_from_noise(extra), expected)
    male = ATTRIBUTES.index("Male")                # u[:, 0] < 0.5, i.e. z[:, 16] < 0
    assert torch.equal(params_from_noise(z).attributes[:, male], (z[:, 16] < 0).float())


def test_attribute_rates_from_noise_match_sample_params():
    z = torch.randn(20000, NOISE_DIMS, generator=torch.Generator().manual_seed(1))
    from_noise = params_from_noise(z).attributes.mean(0)
    sampled = sample_params(20000, seed=1).attributes.mean(0)
    assert (from_noise - sampled).abs().max() < 0.02


def test_noise_narrower_than_the_renderer_reads_is_refused():
    with pytest.raises(VrfamError, match="style_dim >= 40"):
        params_from_noise(torch.randn(2, 32))


@pytest.mark.parametrize("term", TERMS)
def test_each_distillation_term_falls_on_a_fixed_batch(tmp_path, term):
    only = DistillLoss(**{t: float(t == term) for t in TERMS})
    task = GeneratorTask(Bundle.random("tiny", seed=0, components=("generator",)),
                         load_oracles()[0], only, 8,
                         RunOptions(out=tmp_path, steps=10, batch=4, lr=2e-3), Ranks())
    assert task.terms == (term,)
    history = [task.step(0)[term] for _ in range(10)]      # step 0 again: the same batch
    assert history[-1] < 0.7 * history[0]


def test_generator_trains_on_renders_into_a_bundle_with_metrics(tmp_path):
    result = train("generator", "--config", "tiny", "--data", "synth", "--steps", 3,
                   "--batch", 4, "--eval-samples", 16, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").is_file()
    log = (run / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss,l1,multiscale,feature" and len(log) == 4
    bundle = Bundle.load(run / "bundle")
    assert bundle.provenance["generator"]["source"] == "trained"
    assert bundle.provenance["encoder"]["source"] == "random"
    assert not same_weights(bundle.generator.state_dict(),
                            Bundle.random("tiny", seed=0).generator.state_dict())
    assert torch.allclose(bundle.encoder.latent_avg,
                          bundle.generator.mean_latent(4096, seed=0).expand(
                              bundle.generator.n_latent, -1), atol=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 16 and metrics["mean_render_accuracy"] > 0.8
    for prefix in ("", "judge_"):
        per = metrics[f"{prefix}attributes"]
        assert list(per) == list(ATTRIBUTES)
        agreement = [per[a]["agreement"] for a in ATTRIBUTES]
        assert all((16 * x) == pytest.approx(round(16 * x)) for x in agreement)  # k of 16
        assert metrics[f"{prefix or 'mean_'}agreement"] == pytest.approx(sum(agreement) / 9)
    record = json.loads((run / "run.json").read_text())
    assert record["result"]["oracle_agreement"] == pytest.approx(metrics["mean_agreement"])
    assert record["result"]["judge_agreement"] == pytest.approx(metrics["judge_agreement"])


def test_the_learning_rate_decays_by_cosine_to_its_final_fraction(tmp_path):
    from vrfam_rt.training.core import Ranks, RunOptions

    options = RunOptions(out=tmp_path, steps=100, batch=2, lr=1e-2, seed=0)
    task = GeneratorTask(Bundle.random("tiny", seed=0), load_oracles()[0], DistillLoss(), 4,
                         options, Ranks(), lr_final=0.1)
    rates = [task.learning_rate(step) for step in range(0, 101, 10)]
    assert rates[0] == pytest.approx(1e-2) and rates[-1] == pytest.approx(1e-3)
    assert rates[5] == pytest.approx(0.55e-2) and rates == sorted(rates, reverse=True)


def test_generator_trains_on_synth_only(tmp_path):
    result = train("generator", "--config", "tiny", "--data", "generator", "--steps", 1,
                   "--out", tmp_path / "run")
    assert result.exit_code == 2 and "--data synth" in result.output


def test_generator_resume_equals_an_uninterrupted_run(tmp_path):
    # a constant rate: the cosine schedule follows --steps, which this test changes to stop
    common = ["generator", "--config", "tiny", "--data", "synth", "--batch", 2,
              "--eval-samples", 4, "--lr-final", 1]
    assert train(*common, "--steps", 4, "--out", tmp_path / "whole").exit_code == 0
    assert train(*common, "--steps", 2, "--out", tmp_path / "split").exit_code == 0
    result = train(*common, "--steps", 4, "--resume", "--out", tmp_path / "split")
    assert result.exit_code == 0, result.output
    assert same_weights(weights(tmp_path / "whole" / "bundle", "generator"),
                        weights(tmp_path / "split" / "bundle", "generator"))


class FlippingRenderer(torch.nn.Module):
    """A 'generator' that draws render(params_from_noise(z)) with one attribute flipped."""

    def __init__(self, flipped: str):
        super().__init__()
        self.config = Bundle.random("tiny", seed=0, components=("generator",)).generator.config
        self.input = torch.nn.Module()
        self.input.input = torch.zeros(1)
        self.n_latent, self.flipped = 1, flipped

    def mapping(self, z):
        return z

    def forward(self, wplus):
        from vrfam_rt.synthetic.faces import render
        params = params_from_noise(wplus[:, 0])
        k = ATTRIBUTES.index(self.flipped)
        params = params.with_attributes(**{self.flipped: 1 - params.attributes[:, k]})
        return render(params, self.config.size)


def test_agreement_is_read_against_the_attributes_drawn_for_each_z():
    """Samples that show every attribute of their z but one: that attribute's agreement is
    the oracle's error rate on it, every other attribute's is its render accuracy."""
    metrics = oracle_agreement(FlippingRenderer("Eyeglasses"), load_oracles()[0], n=64)
    per = metrics["attributes"]
    assert per["Eyeglasses"]["render_accuracy"] > 0.9
    assert per["Eyeglasses"]["agreement"] == pytest.approx(
        1 - per["Eyeglasses"]["render_accuracy"], abs=2 / 64)
    for attribute in ATTRIBUTES:
        if attribute != "Eyeglasses":
            assert per[attribute]["agreement"] == pytest.approx(
                per[attribute]["render_accuracy"], abs=2 / 64), attribute
    assert metrics["pixel_l1"] > 0


def test_eval_generator_prints_agreement_and_writes_json_and_a_sheet(tmp_path, tiny):
    from click.testing import CliRunner
    from PIL import Image

    from vrfam_rt.cli import main

    tiny.save(tmp_path / "bundle")
    result = CliRunner().invoke(main, ["synth", "eval-generator", "--bundle",
                                       str(tmp_path / "bundle"), "--n", "8", "--json", str(tmp_path / "g.json"),
                                       "--sheet", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    assert "Pale_Skin" in result.output and "mean" in result.output
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["n"] == 8 and report["pixel_l1"] > 0
    assert Image.open(tmp_path / "g.png").size == (8 * 66 + 2, 2 * 66 + 2)   # 2 rows of 8, 64 px
