"""`vrfam-rt eval`: the Table 1 protocol end to end on the synthetic faces."""
import json

import pytest
import torch
from click.testing import CliRunner

from vrfam_rt.cli import main


def run(*args):
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def test_eval_dry_run_reports_every_metric_and_names_the_stand_ins(tmp_path):
    result = run("--config", "tiny", "--samples", "12", "--batch", "5", "--attr", "Smiling",
                 "--attr", "Eyeglasses", "--alpha", "1", "--alpha", "-1.5",
                 "--json", tmp_path / "t1.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t1.json").read_text())
    assert [(e["attribute"], e["alpha"]) for e in report["per_edit"]] == [
        ("Smiling", 1.0), ("Smiling", -1.5), ("Eyeglasses", 1.0), ("Eyeglasses", -1.5)]
    assert report["distortion_l2"] > 0 and report["perception_fid"] > 0
    assert report["wplus_variance"] > 0          # a random e4e encoder's codes differ by layer
    assert report["identity_same_person"] > report["identity_other_person"]
    assert -1 <= report["identity_reconstruction"] <= 1
    assert "identity_same_person" in result.stdout
    assert_pooled_over_edits(report, samples=12, others=8)
    assert "stand-in for Inception" in report["fid_features"]
    assert "stand-in for ArcFace" in report["identity_model"]
    assert "editability_fid" in result.stdout
    assert "fid features: synthetic judge oracle" in result.stdout


def assert_pooled_over_edits(report, samples, others,
                             keys=("target_accuracy", "non_target_accuracy",
                                   "identity_similarity")):
    """The summary is the mean over the edits, and each edit's accuracy counts faces: k of
    `samples` for the target, k of samples x `others` for the other attributes."""
    edits = report["per_edit"]
    for key in keys:
        assert report[key] == pytest.approx(sum(e[key] for e in edits) / len(edits)), key
    for e in edits:
        for key, n in (("target_accuracy", samples), ("non_target_accuracy", samples * others),
                       ("dlib_same_person", samples)):
            if key in e:
                assert n * e[key] == pytest.approx(round(n * e[key])), (key, e[key])


def test_eval_argument_errors_are_one_line(tmp_path):
    result = run("--config", "tiny", "--method", "interfacegan")      # usage errors: 2
    assert result.exit_code == 2 and "leave out" in result.output and "method" in result.output
    result = run("--config", "tiny", "--attr", "Smiles")
    assert result.exit_code == 2 and "did you mean Smiling?" in result.output
    result = run("--config", "tiny", "--images", tmp_path)
    assert result.exit_code == 2 and "--images needs --inception FILE" in result.output
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    result = run("--config", "tiny", "--samples", "4", "--inception", tmp_path / "bad.pt")
    assert result.exit_code == 1 and "is not a TorchScript file" in result.output


class InceptionStandIn(torch.nn.Module):
    """A TorchScript module with the call of the metrics' Inception: float RGB in
    [0, 255] at 299 x 299 -> features with return_features=True."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert x.shape[-1] == 299 and bool(x.min() >= 0) and bool(x.max() <= 255)
        features = torch.nn.functional.adaptive_avg_pool2d(x / 255, 4).flatten(1)   # [N,48]
        return features if return_features else features.sum(1)


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inception.pt"
    with pytest.warns(DeprecationWarning):          # TorchScript is how the file ships
        torch.jit.script(InceptionStandIn()).save(str(path))
    return path


def test_eval_takes_fid_features_from_a_user_inception_file(tmp_path, inception):
    result = run("--config", "tiny", "--samples", "6", "--attr", "Smiling", "--alpha", "1",
                 "--inception", inception, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["fid_features"] == f"Inception pool3 ({inception})"
    assert report["perception_fid"] > 0 and report["target_accuracy"] >= 0


@pytest.mark.usefixtures("dlib")
def test_eval_on_photos_reads_attributes_by_classifier_and_identity_by_dlib(tmp_path, inception):
    from vrfam_rt.images import save_png, to_pil
    from vrfam_rt.synthetic.faces import render, sample_params

    for i, face in enumerate(render(sample_params(5, seed=3), 128)):
        save_png(to_pil(face), tmp_path / "photos" / f"{i}.png")
    result = run("--config", "tiny", "--images", tmp_path / "photos", "--no-align",
                 "--samples", "4", "--attr", "Smiling", "--alpha", "1", "--inception",
                 inception, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 4 and "latent classifier" in report["attribute_reader"]
    assert "dlib" in report["identity_model"] and report["dlib_distance"] > 0
    assert_pooled_over_edits(report, samples=4, others=8,
                             keys=("non_target_accuracy", "dlib_distance", "dlib_same_person"))
    assert report["dlib_fallback_boxes"] <= 2 * 4         # at most each input and each edit


def test_compare_lays_reports_side_by_side(tmp_path, capsys):
    from vrfam_rt.benchmarks.compare import main as compare

    def report(name, target):
        return {"distortion_l2": 0.01, "perception_fid": 1.5, "editability_fid": 2.5,
                "identity_similarity": 0.9, "target_accuracy": target,
                "non_target_accuracy": 0.95,
                "per_edit": [{"attribute": "Smiling", "alpha": a, "target_accuracy": target,
                              "non_target_accuracy": 0.95, "identity_similarity": 0.9}
                             for a in (-1.0, 1.0)]}
    for name, target in (("a", 0.5), ("b", 0.75)):
        (tmp_path / f"{name}.json").write_text(json.dumps(report(name, target)))
    compare([f"A={tmp_path / 'a.json'}", f"B={tmp_path / 'b.json'}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| A | 0.0100 | 1.50 | 2.50 |  | 0.900 | 0.500 | 0.950 |"
    assert lines[3].startswith("| B |") and "0.750" in lines[3]
    assert lines[5].startswith("| attribute | alpha | target: A | target: B |")
    assert lines[7].startswith("| Smiling | -1.0 | 0.500 | 0.750 | 0.950 | 0.950 |")
    with pytest.raises(SystemExit, match="not NAME=report.json"):
        compare([str(tmp_path / "a.json")])
    anchored = report("a", 0.5) | {"identity_same_person": 0.61, "identity_other_person": 0.02,
                                   "identity_reconstruction": 0.45}
    (tmp_path / "c.json").write_text(json.dumps(anchored))
    compare([f"C={tmp_path / 'c.json'}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[4].startswith("Identity anchors")
    assert all(f in lines[4] for f in ("0.610", "0.020", "C 0.450"))


@pytest.mark.usefixtures("dlib")
def test_dlib_descriptor_knows_a_person_and_counts_the_faces_it_did_not_find():
    import matplotlib.cbook
    import numpy as np

    from vrfam_rt.align import FaceAligner
    from vrfam_rt.benchmarks.evaluate import DlibDescriptor
    from vrfam_rt.images import read_rgb

    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    face = np.asarray(FaceAligner().align(read_rgb(photo), 256))
    image = torch.from_numpy(face.copy()).permute(2, 0, 1).float() / 127.5 - 1    # [3,S,S]
    descriptor = DlibDescriptor()
    d = descriptor(torch.stack([image, image.flip(-1)]))           # her, and her mirror image
    assert descriptor.fallbacks == 0
    assert 0 < (d[0] - d[1]).norm() < DlibDescriptor.THRESHOLD
    descriptor(torch.zeros(1, 3, 256, 256))                         # a flat grey: no face
    assert descriptor.fallbacks == 1
