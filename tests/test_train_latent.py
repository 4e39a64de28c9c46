"""Latent classifier, latent transformers and InterFaceGAN boundaries: train, resume, bundle."""
import csv
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from train_helpers import (latents, same_weights, train, weights, write_attrs,
                           write_images)
from vrfam_rt import Bundle
from vrfam_rt.cli import main
from vrfam_rt.training.boundaries import BoundaryTask, condition
from vrfam_rt.training.classifier import ClassifierTask
from vrfam_rt.training.core import RunOptions, Ranks
from vrfam_rt.training.data import LatentDataset
from vrfam_rt.training.losses import frozen
from vrfam_rt.training.transformer import TransformerLoss, TransformerTask

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny):
    """A 64-code latent dataset of the tiny bundle, as a file."""
    path = tmp_path_factory.mktemp("latents") / "latents.safetensors"
    latents(tiny, 64).save(path)
    return path


def options(tmp_path, steps=20, batch=8, lr=1e-3):
    return RunOptions(out=tmp_path, steps=steps, batch=batch, lr=lr)


def losses(task, steps):
    return [task.step(s) for s in range(steps)]


def test_classifier_trains_from_a_labelled_image_folder_into_a_bundle(tmp_path):
    files = write_images(tmp_path / "faces", 8)
    labels = torch.arange(8 * 40).view(8, 40) % 3 == 0
    attrs = write_attrs(tmp_path / "faces" / "list_attr_celeba.txt", files, labels)
    result = train("classifier", "--config", "tiny", "--data", tmp_path / "faces", "--attrs",
                   attrs, "--no-align", "--steps", 3, "--batch", 4, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(tmp_path / "run" / "bundle")
    assert bundle.provenance["classifier"]["source"] == "trained"
    assert bundle.provenance["classifier"]["command"].startswith("vrfam-rt train classifier")
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and list(rows[0]) == ["step", "loss", "bce"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["active_terms"] == {"bce": True}
    cached = list((tmp_path / "faces" / ".vrfam-cache").glob("latents-*.safetensors"))
    assert len(LatentDataset.load(cached[0])) == 8


def test_classifier_bce_falls_on_a_fixed_batch(tiny, tmp_path):
    fixed = latents(tiny, 8)
    history = losses(ClassifierTask(tiny, fixed, options(tmp_path), Ranks()), 20)
    assert history[-1]["bce"] < 0.5 * history[0]["bce"]


@pytest.mark.parametrize("term", ["cls", "attr", "id", "latent"])
def test_each_transformer_loss_term_falls_on_a_fixed_batch(tiny, tmp_path, term):
    fixed = latents(tiny, 8)
    only = TransformerLoss(**{k: float(k == term) for k in ("cls", "attr", "id", "latent")})
    arcface = frozen(Bundle.random("tiny", seed=1).identity) if term == "id" else None
    task = TransformerTask(tiny, fixed, "Smiling", None, "released", arcface, only,
                           options(tmp_path, lr=1e-2), Ranks())
    history = losses(task, 10)
    assert history[-1][term] < 0.7 * history[0][term]


@pytest.mark.parametrize("method,data_args", [("linear", ["--data", "generator"]),
                                              ("nonlinear", ["--data", "FILE"])])
def test_transformer_trains_either_form_and_keeps_the_other_attributes(tmp_path, data, method,
                                                                       data_args):
    data_args = [str(data) if a == "FILE" else a for a in data_args]
    result = train("transformer", "--config", "tiny", *data_args, "--attr", "Smiling",
                   "--method", method, "--no-identity", "--steps", 3, "--batch", 8,
                   "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(tmp_path / "run" / "bundle")
    assert bundle.transformer_methods["Smiling"] == method
    assert bundle.provenance["transformer.Smiling"]["source"] == "trained"
    before = Bundle.random("tiny", seed=0).transformer.state_dict()
    after = bundle.transformer.state_dict()
    kept = [k for k in before if ".Eyeglasses." in k]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["active_terms"] == {"cls": True, "attr": True, "id": False, "latent": False}


def test_transformer_for_a_new_attribute_joins_the_bundle_that_edit_uses(tmp_path, data):
    result = train("transformer", "--config", "tiny", "--data", data, "--attr", "Bald",
                   "--no-identity", "--steps", 2, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert Bundle.load(tmp_path / "run" / "bundle").attributes[-1] == "Bald"
    face = write_images(tmp_path / "in", 1)[0]
    edit = CliRunner().invoke(main, ["edit", str(tmp_path / "in" / face), "--bundle",
                                     str(tmp_path / "run" / "bundle"), "--attr", "Bald=1",
                                     "--no-align", "--out", str(tmp_path / "edits")])
    assert edit.exit_code == 0, edit.output
    assert [p.name for p in (tmp_path / "edits").iterdir()] == ["0000_Bald+1.0.png"]


def test_identity_term_without_arcface_weights_names_the_flag(tmp_path, data):
    result = train("transformer", "--config", "tiny", "--data", data, "--attr", "Smiling",
                   "--steps", 2, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert "--arcface" in result.output and "--no-identity" in result.output
    assert not (tmp_path / "run").exists()


TRAINERS = {
    "classifier": (["classifier"], "classifier"),
    "transformer": (["transformer", "--attr", "Smiling", "--no-identity",
                     "--alpha-mode", "uniform"], "transformer"),
    "boundaries": (["boundaries", "--attr", "Smiling", "--condition", "Male"], "transformer"),
}


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_resume_equals_an_uninterrupted_run(tmp_path, data, trainer):
    args, component = TRAINERS[trainer]
    common = [*args, "--config", "tiny", "--data", data, "--batch", 8, "--seed", 3]
    assert train(*common, "--steps", 6, "--out", tmp_path / "whole").exit_code == 0
    assert train(*common, "--steps", 3, "--out", tmp_path / "split").exit_code == 0
    result = train(*common, "--steps", 6, "--resume", "--out", tmp_path / "split")
    assert result.exit_code == 0, result.output
    assert same_weights(weights(tmp_path / "whole" / "bundle", component),
                        weights(tmp_path / "split" / "bundle", component))
    logs = [(tmp_path / run / "log.csv").read_text() for run in ("whole", "split")]
    assert logs[0] == logs[1] and len(logs[0].splitlines()) == 7


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_line_and_exit_code_2(tmp_path, data):
    result = train("classifier", "--config", "tiny", "--data", data, "--device", "cuda",
                   "--out", tmp_path / "run")
    assert result.exit_code == 2 and "use --device cpu" in result.output


def test_a_second_run_into_the_same_folder_needs_resume(tmp_path, data):
    args = ["classifier", "--config", "tiny", "--data", data, "--steps", 1, "--out", tmp_path]
    assert train(*args).exit_code == 0
    result = train(*args)
    assert result.exit_code == 1 and "--resume" in result.output


def test_svm_boundary_recovers_the_separating_direction(tiny, tmp_path):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1000, 64, generator=gen)
    u, v = torch.zeros(64), torch.zeros(64)
    u[3], v[3], v[5] = 1.0, 0.6, 0.8
    labels = torch.stack([(w @ u > 0), (w @ v > 0)], 1).float()
    names = ("Smiling", "Male")
    data = LatentDataset(w[:, None].expand(-1, 10, -1).contiguous(), labels, names)
    task = BoundaryTask(tiny, data, ("Smiling",), ("Male",), 0, 0.02, 3.0,
                        options(tmp_path, lr=1e-2), Ranks())
    history = losses(task, 300)
    assert history[-1]["svm_Smiling"] < 0.2 * history[0]["svm_Smiling"]
    normals = task.boundaries()
    assert normals["Smiling"] @ u > 0.9 and normals["Male"] @ v > 0.9
    assert task.summary()["val_accuracy_Smiling"] > 0.93
    assert abs(float(task.edits()["Smiling"] @ normals["Male"])) < 1e-5


def test_conditional_boundary_is_orthogonal_to_every_condition():
    gen = torch.Generator().manual_seed(1)
    n, conditions = torch.randn(16, generator=gen), torch.randn(3, 16, generator=gen)
    out = condition(n / n.norm(), conditions)
    assert torch.allclose(conditions @ out, torch.zeros(3), atol=1e-5)
    assert abs(float(out.norm()) - 1) < 1e-6


def test_boundaries_become_linear_edits_that_export_accepts(tmp_path, data):
    result = train("boundaries", "--config", "tiny", "--data", "generator", "--samples", 2000,
                   "--attr", "Smiling", "--attr", "Bald", "--steps", 50, "--distance", 2.0,
                   "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    normals = load_file(tmp_path / "run" / "boundaries.safetensors")
    bundle = Bundle.load(tmp_path / "run" / "bundle")
    assert bundle.transformer_methods["Bald"] == "linear"
    w = torch.randn(2, 10, 64)
    with torch.no_grad():
        moved = bundle.transformer.edit(w, "Bald", 1.0) - w
    assert torch.allclose(moved[:, :6], 2.0 * normals["Bald"].expand(2, 6, -1), atol=1e-5)
    assert torch.equal(moved[:, 6:], torch.zeros(2, 4, 64))
    export = CliRunner().invoke(main, ["export", "--bundle", str(tmp_path / "run" / "bundle"),
                                       "--out", str(tmp_path / "onnx"), "--precision", "fp32",
                                       "--components", "transformer"])
    assert export.exit_code == 0, export.output


def test_oracle_mixes_lie_between_two_codes_and_carry_the_oracles_reading(tiny):
    from vrfam_rt.errors import VrfamError
    from vrfam_rt.training.classifier import oracle_mixes
    from vrfam_rt.synthetic.oracles import load_oracles
    from vrfam_rt.synthetic.faces import ATTRIBUTES

    codes = latents(tiny, 6).wplus
    data = LatentDataset(codes, (torch.arange(6 * 9).view(6, 9) % 2).float(), ATTRIBUTES)
    oracle, generator = load_oracles()[0], tiny.generator.eval()
    mixed = oracle_mixes(data, generator, oracle, 5, seed=0, reach=0.0)
    assert len(mixed) == 11 and mixed.attributes == ATTRIBUTES
    assert torch.equal(mixed.wplus[:6], codes) and torch.equal(mixed.labels[:6], data.labels)
    with torch.no_grad():
        logits = oracle(generator(mixed.wplus[6:]))
    sure = logits.abs() > 1e-3                    # away from the threshold: kernel-proof
    assert torch.equal(mixed.labels[6:][sure], (logits > 0).float()[sure])
    for mix in mixed.wplus[6:]:                   # on a segment between two of the codes
        residuals = []
        for i in range(6):
            for j in range(6):
                d = codes[j] - codes[i]
                if i == j or float(d.square().sum()) == 0:
                    continue
                t = float(((mix - codes[i]) * d).sum() / d.square().sum())
                if 0 <= t <= 1:
                    residuals.append(float((mix - codes[i] - t * d).norm() / d.norm()))
        assert min(residuals) < 1e-4
    reaching = oracle_mixes(data, generator, oracle, 5, seed=0, reach=0.5)
    assert not torch.allclose(reaching.wplus[6:], mixed.wplus[6:])   # t drawn wider
    with pytest.raises(VrfamError, match="oracle has no Wavy_Hair"):
        oracle_mixes(LatentDataset(codes, data.labels[:, :1], ("Wavy_Hair",)), generator,
                     oracle, 2, seed=0)


def test_classifier_cli_adds_oracle_mixes(tmp_path, tiny):
    from vrfam_rt.synthetic.faces import ATTRIBUTES

    path = tmp_path / "latents.safetensors"
    codes = latents(tiny, 8).wplus
    LatentDataset(codes, (torch.arange(8 * 9).view(8, 9) % 3 == 0).float(), ATTRIBUTES).save(path)
    result = train("classifier", "--config", "tiny", "--data", path, "--oracle-mixes", 8,
                   "--steps", 2, "--batch", 4, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["args"]["oracle_mixes"] == 8
    assert Bundle.load(tmp_path / "run" / "bundle").classifier.attributes == ATTRIBUTES

