"""`vrfam-rt eval`: the Table 1 protocol end to end on the synthetic faces."""
import json

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
    for key in ("target_accuracy", "non_target_accuracy"):
        assert 0 <= report[key] <= 1
    assert -1 <= report["identity_similarity"] <= 1
    assert "stand-in for Inception" in report["fid_features"]
    assert "stand-in for ArcFace" in report["identity_model"]
    assert "editability_fid" in result.stdout and "FID on oracle features" in result.stdout


def test_eval_without_a_bundle_or_with_an_unknown_attribute_is_one_line():
    result = run()
    assert result.exit_code == 1 and "give --bundle B" in result.output
    result = run("--config", "tiny", "--attr", "Smiles")
    assert result.exit_code == 1 and "this bundle edits Smiling" in result.output
