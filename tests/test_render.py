"""Procedural faces (vrfam_rt/synthetic/faces.py): seeded, aligned, attributes where they belong."""
import json

import pytest
import torch
import torch.nn.functional as F

from vrfam_rt.config import load_config
from vrfam_rt.errors import VrfamError
from vrfam_rt.synthetic.faces import (ATTRIBUTES, read_attr_file, render, sample_params,
                                      write_attr_file)

SIZE = 64
CENTERS = (torch.arange(SIZE) + 0.5) * (2 / SIZE) - 1
Y, X = CENTERS.view(SIZE, 1), CENTERS.view(1, SIZE)   # canvas coordinates, y down


def box(x0, x1, y0, y1):
    """[SIZE, SIZE] bool mask of canvas pixels with x0 <= x < x1 and y0 <= y < y1."""
    return (X >= x0) & (X < x1) & (Y >= y0) & (Y < y1)


MOUTH = box(-0.3, 0.3, 0.28, 0.55)
EYES = box(-0.4, 0.4, -0.15, 0.05)
FOREHEAD = box(-0.25, 0.25, -0.38, -0.25)
CROWN = box(-0.25, 0.25, -0.68, -0.5)
CHEEKS = box(-0.35, -0.2, 0.05, 0.25) | box(0.2, 0.35, 0.05, 0.25)
BESIDE_NECK = box(-0.7, -0.5, 0.35, 0.7) | box(0.5, 0.7, 0.35, 0.7)
TOP_CORNERS = box(-1, -0.88, -1, -0.88) | box(0.88, 1, -1, -0.88)
ABOVE_EYES = box(-1, 1, -1, -0.3)
BELOW_NOSE = box(-1, 1, 0.3, 1)
BELOW_MOUTH = box(-1, 1, 0.45, 1)
# attribute -> (where a flip must show, where it must not)
REGIONS = {
    "Smiling": (MOUTH, ABOVE_EYES),
    "Mouth_Slightly_Open": (MOUTH, ABOVE_EYES),
    "Eyeglasses": (EYES, BELOW_MOUTH),
    "Bangs": (FOREHEAD, BELOW_NOSE),
    "Male": (BESIDE_NECK, TOP_CORNERS),
    "Young": (CROWN, TOP_CORNERS),
    "Black_Hair": (CROWN, TOP_CORNERS),
    "Blond_Hair": (CROWN, TOP_CORNERS),
    "Pale_Skin": (CHEEKS, TOP_CORNERS),
}


@pytest.fixture(scope="module")
def faces():
    params = sample_params(24, seed=3)
    return params, render(params, SIZE)


def test_attribute_order_is_the_tiny_configs_transformer_order():
    assert ATTRIBUTES == load_config("tiny").transformer.attributes


def test_same_seed_gives_bitwise_same_images_and_another_seed_differs():
    a, b = render(sample_params(8, seed=11)), render(sample_params(8, seed=11))
    assert torch.equal(a, b)
    assert (a - render(sample_params(8, seed=12))).abs().mean() > 0.1


@pytest.mark.parametrize("size", [64, 128])
def test_renders_are_float_images_in_range(size):
    images = render(sample_params(5, seed=0), size)
    assert images.shape == (5, 3, size, size) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.2


def test_an_empty_batch_renders_to_an_empty_tensor():
    assert render(sample_params(3, seed=0)[:0], 128).shape == (0, 3, 128, 128)


def test_128_px_is_the_same_face_as_64_px():
    params = sample_params(6, seed=1)
    small, large = render(params, 64), F.avg_pool2d(render(params, 128), 2)
    assert (small - large).abs().mean() < 0.03


def test_views_of_one_person_share_the_identity_but_not_the_scene():
    params = sample_params(6, seed=2, views=3)
    assert params.identity_id.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(params.identity[0], params.identity[2])
    assert not torch.equal(params.identity[0], params.identity[3])
    assert not torch.equal(params.nuisance[0], params.nuisance[1])


def test_attribute_priors_are_balanced_and_hair_colours_exclusive():
    params = sample_params(4000, seed=0)
    rates = params.attributes.mean(0)
    assert rates.min() > 0.25 and rates.max() < 0.65, dict(zip(ATTRIBUTES, rates.tolist()))
    assert (params.attribute("Black_Hair") * params.attribute("Blond_Hair")).sum() == 0
    male = params.attribute("Male") > 0
    assert params.attribute("Bangs")[male].mean() < params.attribute("Bangs")[~male].mean() - 0.2


def test_setting_one_hair_colour_clears_the_other():
    params = sample_params(50, seed=4)
    blond = params.with_attributes(Blond_Hair=1)
    assert blond.attribute("Blond_Hair").min() == 1 and blond.attribute("Black_Hair").max() == 0
    with pytest.raises(VrfamError, match="cannot both be 1"):
        params.with_attributes(Blond_Hair=1, Black_Hair=1)
    with pytest.raises(VrfamError, match="unknown attribute 'Bald'"):
        params.with_attributes(Bald=1)


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_an_attribute_flip_changes_its_region_and_leaves_far_pixels(faces, name):
    params, images = faces
    flipped = render(params.with_attributes(**{name: 1 - params.attribute(name)}), SIZE)
    diff = (flipped - images).abs().amax(1)          # [n, H, W]
    near, far = REGIONS[name]
    assert diff[:, near].mean() > 0.04, diff[:, near].mean()
    assert diff[:, far].max() < 0.01, diff[:, far].max()


def test_attribute_file_has_celeba_layout_and_round_trips(tmp_path, faces):
    params, _ = faces
    files = [f"{i:06d}.png" for i in range(len(params))]
    write_attr_file(tmp_path / "list_attr_celeba.txt", files, params.attributes)
    lines = (tmp_path / "list_attr_celeba.txt").read_text().splitlines()
    assert lines[0] == "24" and lines[1].split() == list(ATTRIBUTES)
    assert lines[2].split()[0] == "000000.png" and set(lines[2].split()[1:]) <= {"1", "-1"}
    read_files, names, values = read_attr_file(tmp_path / "list_attr_celeba.txt")
    assert read_files == files and names == ATTRIBUTES and torch.equal(values, params.attributes)


def test_a_truncated_attribute_file_is_refused(tmp_path):
    (tmp_path / "attrs.txt").write_text("3\nSmiling Male\na.png 1 -1\n")
    with pytest.raises(VrfamError, match="1 rows of 3 announced"):
        read_attr_file(tmp_path / "attrs.txt")


def test_render_command_writes_images_labels_identities_and_parameters(tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from vrfam_rt.cli import main
    from vrfam_rt.images import image_files, load_image
    from vrfam_rt.synthetic.faces import FaceParams

    out = tmp_path / "synth"
    args = ["synth", "render", "--n", "5", "--seed", "7", "--views", "2", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert [p.name for p in image_files(out)] == [f"{i:06d}.png" for i in range(5)]
    params = FaceParams.from_tensors(load_file(str(out / "params.safetensors")))
    assert torch.equal(params.attributes, sample_params(5, seed=7, views=2).attributes)
    assert torch.equal(read_attr_file(out / "list_attr_celeba.txt")[2], params.attributes)
    assert (out / "identity_synth.txt").read_text().split() == [
        "000000.png", "0", "000001.png", "0", "000002.png", "1", "000003.png", "1",
        "000004.png", "2"]
    assert (load_image(out / "000004.png", 64) - render(params[4:5])[0]).abs().max() <= 1 / 127
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already exists" in again.output


def test_a_short_oracle_run_beats_the_majority_baseline_on_held_out_renders():
    from vrfam_rt.synthetic.oracles import TrainConfig, evaluate_attributes, train_attribute_oracle

    oracle = train_attribute_oracle(TrainConfig(steps=30, batch=16))   # 480 renders
    report = evaluate_attributes(oracle, n=300)
    majority = sum(v["majority"] for v in report["attributes"].values()) / len(ATTRIBUTES)
    assert report["mean_accuracy"] > majority + 0.1, (report["mean_accuracy"], majority)


def test_oracle_training_is_seeded():
    from vrfam_rt.synthetic.oracles import TrainConfig, train_identity_embedding

    runs = [train_identity_embedding(TrainConfig(steps=3, batch=8, seed=s)) for s in (1, 1, 2)]
    weights = [torch.cat([v.flatten().float() for v in r.state_dict().values()]) for r in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_contrastive_loss_is_low_when_views_of_one_person_agree():
    from vrfam_rt.synthetic.oracles import contrastive_loss

    ids = torch.tensor([0, 0, 1, 1, 2, 2])
    agree = F.normalize(torch.eye(3).repeat_interleave(2, 0), dim=1)
    scrambled = F.normalize(torch.eye(3)[[0, 1, 1, 2, 2, 0]], dim=1)
    assert contrastive_loss(agree, ids, 0.1) < 0.01 < 1 < contrastive_loss(scrambled, ids, 0.1)


def test_verification_metrics_on_known_scores():
    from vrfam_rt.synthetic.oracles import best_threshold_accuracy, roc_auc

    positive, negative = torch.tensor([0.9, 0.8, 0.3]), torch.tensor([0.1, 0.2, 0.5])
    assert roc_auc(positive, negative) == pytest.approx(8 / 9)
    assert roc_auc(torch.tensor([3.0, 2, 2]), torch.tensor([2.0, 1])) == pytest.approx(5 / 6)
    assert best_threshold_accuracy(positive, negative) == pytest.approx((5 / 6, 0.2))


def test_saved_oracles_load_back_and_stay_under_two_megabytes(tmp_path):
    from vrfam_rt.synthetic.oracles import (WEIGHTS, AttributeOracle, IdentityEmbedding,
                                          load_oracles, save_oracles)

    torch.manual_seed(0)
    attributes, identity = AttributeOracle().eval(), IdentityEmbedding().eval()
    save_oracles(tmp_path, attributes, identity, {"note": "untrained"})
    loaded_attributes, loaded_identity = load_oracles(tmp_path)
    images = render(sample_params(3, seed=0))
    with torch.no_grad():
        assert torch.equal(loaded_attributes(images), attributes(images))
        embeddings = loaded_identity(images)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3))
    assert all((tmp_path / f).stat().st_size < 2e6 for f in WEIGHTS.values())
    (tmp_path / WEIGHTS["identity"]).unlink()
    with pytest.raises(VrfamError, match="synth train-oracle"):
        load_oracles(tmp_path)


def test_shipped_oracles_still_read_the_renders_and_their_flips():
    """Guards the weights in vrfam_rt/assets/oracle: a renderer change that breaks them
    fails here (retrain with the command in their oracle.json)."""
    from vrfam_rt.cli.synth import format_report
    from vrfam_rt.synthetic.oracles import (evaluate_attributes, evaluate_flips, evaluate_identity,
                                          load_oracles)

    attributes, identity = load_oracles()
    report = {"attributes": evaluate_attributes(attributes, n=200),
              "identity": evaluate_identity(identity, people=100)}
    report["flips"] = evaluate_flips(attributes, identity, report["identity"]["threshold"], n=40)
    assert report["attributes"]["mean_accuracy"] > 0.98
    assert report["identity"]["roc_auc"] > 0.97
    flips = report["flips"]["attributes"]
    assert min(row["flipped_accuracy"] for row in flips.values()) > 0.95
    assert min(row["same_person_rate"] for row in flips.values()) > 0.9
    table = format_report(report)
    assert "Mouth_Slightly_Open" in table and "trained in" not in table


def test_a_short_identity_run_beats_chance_on_held_out_people():
    from vrfam_rt.synthetic.oracles import TrainConfig, evaluate_identity, train_identity_embedding

    embedding = train_identity_embedding(TrainConfig(steps=30, batch=16))   # 240 people
    assert evaluate_identity(embedding, people=100)["roc_auc"] > 0.6


def test_the_judge_oracle_trains_saves_and_loads_apart_from_the_first(tmp_path):
    from click.testing import CliRunner

    from vrfam_rt.cli import main
    from vrfam_rt.synthetic.oracles import JUDGE_REPORT, WEIGHTS, load_judge

    result = CliRunner().invoke(main, ["synth", "train-oracle", "--judge", "--out",
                                       str(tmp_path), "--steps", "3", "--batch", "8",
                                       "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "judge attribute oracle: mean held-out accuracy" in result.output
    assert not any((tmp_path / f).exists() for f in WEIGHTS.values())
    report = json.loads((tmp_path / JUDGE_REPORT).read_text())
    assert report["config"]["seed"] == 1 and "--judge" in report["command"]
    with torch.no_grad():
        assert load_judge(tmp_path)(render(sample_params(2, seed=0))).shape == (2, 9)
    result = CliRunner().invoke(main, ["synth", "train-oracle", "--judge", "--out",
                                       str(tmp_path), "--steps", "3"])
    assert result.exit_code == 1 and "already exists" in result.output


def test_the_shipped_judge_reads_the_renders():
    from vrfam_rt.synthetic.oracles import evaluate_attributes, load_judge

    assert evaluate_attributes(load_judge(), n=200)["mean_accuracy"] > 0.98
