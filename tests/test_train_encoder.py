"""The variance-reduced encoder trainer: loss terms, progressive schedule, weights, resume."""
import json

import matplotlib.cbook
import pytest
import torch

from train_helpers import (arcface_file, lpips_files, same_weights, train, weights,
                           write_images)
from vrfam_rt import Bundle
from vrfam_rt.training.core import RunOptions, Ranks
from vrfam_rt.training.data import ImageFolder
from vrfam_rt.training.encoder import EncoderLoss, EncoderTask, Progressive
from vrfam_rt.training.losses import load_arcface, load_lpips

pytestmark = pytest.mark.usefixtures("one_thread")

PHOTO = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
TERMS = ("l2", "perceptual", "id", "reg", "adv")


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("weights")
    heads, backbone = lpips_files(folder)
    return {"heads": heads, "backbone": backbone, "arcface": arcface_file(tiny, folder)}


@pytest.mark.parametrize("term", TERMS)
def test_each_encoder_loss_term_falls_on_a_fixed_batch(tmp_path, weight_files, term):
    write_images(tmp_path / "faces", 2)
    images = ImageFolder(tmp_path / "faces", None, 64, align=False)
    only = EncoderLoss(**{t: float(t == term) for t in TERMS}, d_reg_every=1)
    lr = 1e-2 if term == "adv" else 1e-3       # the discriminator keeps learning against it
    task = EncoderTask(Bundle.random("tiny", seed=0), images,
                       load_lpips(weight_files["heads"], weight_files["backbone"]),
                       load_arcface(weight_files["arcface"]), only, Progressive(0, 10**6),
                       RunOptions(out=tmp_path, steps=8, batch=2, lr=lr), Ranks())
    column = {"perceptual": "lpips"}.get(term, term)
    history = [task.step(s)[column] for s in range(8)]
    assert history[-1] < 0.8 * history[0]


def test_deltas_join_one_by_one_after_the_shared_code():
    schedule = Progressive(start=4, every=2)
    assert [schedule.stage(s, 10) for s in (0, 3, 4, 5, 6, 8, 100)] == [0, 0, 1, 1, 2, 3, 9]


def test_encoder_trains_on_generator_samples_into_a_bundle(tmp_path, weight_files):
    result = train("encoder", "--config", "tiny", "--data", "generator", "--steps", 3,
                   "--progressive-start", 1, "--progressive-every", 1,
                   "--lpips-weights", weight_files["heads"],
                   "--lpips-backbone", weight_files["backbone"],
                   "--arcface", weight_files["arcface"], "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(tmp_path / "run" / "bundle")
    assert bundle.config.encoder.progressive_stage == 2     # deltas 1, 2 trained; 3.. unused
    assert {"encoder", "discriminator"} <= set(bundle.modules)
    assert bundle.provenance["discriminator"]["source"] == "trained"
    # the encoder continued the random bundle's: its provenance keeps what it started from
    assert bundle.provenance["encoder"]["continues"] == {"source": "random", "seed": 0}
    assert "continues" not in bundle.provenance["discriminator"]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert all(record["active_terms"].values()) and len(record["active_terms"]) == 7
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0]
    assert header == "step,loss,l2,lpips,id,reg,adv,d,r1"


@pytest.mark.parametrize("missing,flag", [("--lpips-weights", "--no-perceptual"),
                                          ("--arcface", "--no-identity")])
def test_a_missing_loss_network_stops_and_names_the_flag_that_disables_it(tmp_path, weight_files,
                                                                          missing, flag):
    given = {"--lpips-weights": weight_files["heads"], "--lpips-backbone": weight_files["backbone"],
             "--arcface": weight_files["arcface"]}
    args = [a for k, v in given.items() if not k.startswith(missing) for a in (k, v)]
    result = train("encoder", "--config", "tiny", "--data", "generator", "--steps", 1, *args,
                   "--out", tmp_path / "run")
    assert result.exit_code == 1 and flag in result.output
    assert not (tmp_path / "run").exists()


def test_lpips_backbone_and_heads_may_share_one_file(tmp_path, weight_files):
    both = tmp_path / "lpips_alex_full.pth"
    torch.save(torch.load(weight_files["heads"]) | torch.load(weight_files["backbone"]), both)
    whole = load_lpips(both, None)
    split = load_lpips(weight_files["heads"], weight_files["backbone"])
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(whole(a, b), split(a, b)) and (whole(a, b) > 0).all()
    result = train("encoder", "--config", "tiny", "--data", "generator", "--steps", 1,
                   "--lpips-weights", weight_files["heads"], "--no-identity",
                   "--out", tmp_path / "run")
    assert result.exit_code == 1 and "--lpips-backbone" in result.output


def test_encoder_resume_equals_an_uninterrupted_run(tmp_path):
    common = ["encoder", "--config", "tiny", "--data", "generator", "--batch", 2,
              "--no-perceptual", "--no-identity", "--progressive-start", 1,
              "--progressive-every", 1, "--d-reg-every", 2]
    assert train(*common, "--steps", 4, "--out", tmp_path / "whole").exit_code == 0
    assert train(*common, "--steps", 2, "--out", tmp_path / "split").exit_code == 0
    result = train(*common, "--steps", 4, "--resume", "--out", tmp_path / "split")
    assert result.exit_code == 0, result.output
    for component in ("encoder", "discriminator"):
        assert same_weights(weights(tmp_path / "whole" / "bundle", component),
                            weights(tmp_path / "split" / "bundle", component))


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_photos_are_aligned_once_and_read_from_the_cache(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "hopper.jpg").write_bytes(open(PHOTO, "rb").read())
    images = ImageFolder(folder, None, 64, align=True)
    first = images.batch(torch.tensor([0]))
    cached = folder / ".vrfam-cache" / "aligned-64" / "hopper.png"
    assert cached.is_file() and first.shape == (1, 3, 64, 64)
    images._aligner = None
    cached.write_bytes(cached.read_bytes())                 # served from here, no aligner
    assert torch.equal(images.batch(torch.tensor([0])), first) and images._aligner is None


def test_the_encoder_body_can_start_from_arcface_weights(tmp_path, weight_files):
    result = train("encoder", "--config", "tiny", "--data", "generator", "--steps", 1,
                   "--lr", 0, "--lambda-adv", 0, "--no-perceptual", "--no-identity",
                   "--init-backbone", weight_files["arcface"], "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    arcface = torch.load(weight_files["arcface"])
    encoder = weights(tmp_path / "run" / "bundle", "encoder")
    assert torch.equal(encoder["encoder.body.2.res_layer.1.weight"],
                       arcface["body.2.res_layer.1.weight"])


def test_the_oracle_perceptual_term_sees_a_smile_that_l2_barely_does(tmp_path):
    """The procedural faces' perceptual term: a smile is a pixel MSE of ~1e-3 (a twentieth
    of the shipped encoder's reconstruction error), yet it weighs (on average) more than 5x
    a change of shirt colour with 2.25x its pixel MSE, which L2 ranks above it; and the trainer takes
    the term through the CLI in place of LPIPS."""
    from vrfam_rt.training.generator import OraclePerceptual
    from vrfam_rt.synthetic.oracles import load_oracles
    from vrfam_rt.synthetic.faces import render, sample_params

    distance = OraclePerceptual(load_oracles()[0])
    params = sample_params(8, seed=3)
    plain = render(params.with_attributes(Smiling=0.0), 64)
    smiling = render(params.with_attributes(Smiling=1.0), 64)
    mse = (smiling - plain).pow(2).mean(dim=(1, 2, 3))
    assert (mse < 3e-3).all()
    shirt = plain.clone()
    shirt[:, :, 48:] += 3 * mse.sqrt().view(-1, 1, 1, 1)     # bottom quarter: 2.25x the MSE
    with torch.no_grad():
        smile, colour = distance(smiling, plain), distance(shirt, plain)
        assert smile.mean() > 5 * colour.mean() and (smile > 2 * colour).all()
        assert distance(plain, plain).abs().max() < 1e-6
    result = train("encoder", "--config", "tiny", "--data", "generator", "--steps", 2,
                   "--oracle-perceptual", "--no-identity", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["active_terms"]["lpips"]
    refused = train("encoder", "--config", "tiny", "--data", "generator", "--steps", 2,
                    "--oracle-perceptual", "--no-perceptual", "--out", tmp_path / "r2")
    assert refused.exit_code == 2 and "replaces LPIPS" in refused.output
