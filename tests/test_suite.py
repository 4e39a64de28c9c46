"""Model suites: bundles that share weight files, the eval --method choice, the shipped
default suite and the demo it backs."""
import json

import pytest
import torch
from click.testing import CliRunner

from vrfam_rt import Bundle
from vrfam_rt.cli import main
from vrfam_rt.errors import VrfamError
from vrfam_rt.suite import METHODS, default_suite, member
from vrfam_rt.training.suite import write_suite


def test_a_bundle_saved_with_share_names_the_identical_files_and_loads_the_same(tmp_path, tiny):
    base = tiny.save(tmp_path / "base")
    other = Bundle.random("tiny", seed=1)
    variant = Bundle(tiny.config, dict(tiny.modules) | {"transformer": other.transformer})
    variant.save(tmp_path / "variant", share=base)
    files = json.loads((tmp_path / "variant" / "bundle.json").read_text())["files"]
    assert files["generator"]["file"] == "../base/generator.safetensors"
    assert files["transformer"]["file"] == "transformer.safetensors"
    assert sorted(p.name for p in (tmp_path / "variant").iterdir()) == [
        ".vrfam-rt.json", "bundle.json", "transformer.safetensors"]
    loaded = Bundle.load(tmp_path / "variant")
    assert loaded.component_hashes() == variant.component_hashes()
    for key, value in other.transformer.state_dict().items():
        assert torch.equal(loaded.transformer.state_dict()[key], value)


@pytest.fixture(scope="module")
def suite(tmp_path_factory, tiny):
    """A suite of random tiny bundles: vrfam, and three variants with other transformers."""
    root = tmp_path_factory.mktemp("suite")
    bundles = {}
    for k, method in enumerate(METHODS):
        transformer = Bundle.random("tiny", seed=k).transformer
        modules = dict(tiny.modules) | {"transformer": transformer}
        bundles[method] = Bundle(tiny.config, modules).save(root / "parts" / method)
    return write_suite(root / "suite", bundles, {"note": "test"})


def test_a_suite_stores_shared_weights_once(suite):
    manifest = json.loads((suite / "suite.json").read_text())
    assert list(manifest["methods"]) == list(METHODS) and manifest["note"] == "test"
    assert (suite / "faces" / "example.png").is_file()
    example = manifest["example_face"]          # chosen by the judge's reading of the edit
    assert set(example["judge_smiling"]) == {"reconstruction", "Smiling +1.0"}
    assert "judge" in example["chosen_by"] and example["render_seed"] == 7
    for method in METHODS[1:]:
        assert sorted(p.name for p in (suite / method).iterdir()) == [
            ".vrfam-rt.json", "bundle.json", "transformer.safetensors"]
        assert Bundle.load(member(suite, method)).modules.keys() == {
            "generator", "encoder", "classifier", "transformer"}


def test_eval_picks_the_method_of_a_suite_and_refuses_it_for_a_single_bundle(suite, tmp_path):
    result = CliRunner().invoke(main, ["eval", "--bundle", str(suite), "--method",
                                       "interfacegan", "--samples", "6", "--attr", "Smiling",
                                       "--alpha", "1", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["bundle"] == str(suite / "interfacegan") and report["method"] == "interfacegan"
    result = CliRunner().invoke(main, ["eval", "--bundle", str(suite / "vrfam"), "--method",
                                       "e4e-linear", "--samples", "6"])
    assert result.exit_code == 2 and "is a single bundle" in result.output
    with pytest.raises(VrfamError, match="not a model suite"):
        member(suite / "vrfam", "vrfam")


shipped = pytest.mark.skipif(not (default_suite() / "suite.json").is_file(),
                             reason="the default suite is not built "
                                    "(scripts/build_default_bundle.sh)")


@shipped
def test_the_shipped_suite_fits_the_size_budget_and_every_method_loads():
    size = sum(f.stat().st_size for f in default_suite().rglob("*") if f.is_file())
    assert size <= 25 * 2**20, f"default suite is {size / 2**20:.1f} MiB"
    for method in METHODS:
        bundle = Bundle.load(member(None, method))
        assert bundle.attributes[0] == "Smiling"


@shipped
def test_the_demo_edit_runs_on_the_default_bundle_without_arguments(tmp_path):
    face = default_suite() / "faces" / "example.png"
    result = CliRunner().invoke(main, ["edit", str(face), "--attr", "Smiling", "--grid",
                                       "--no-align", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example_Smiling+1.0.png",
                                                          "example_grid.png"]
