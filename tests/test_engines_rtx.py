"""Real TensorRT-RTX plans, built on this machine without a GPU (running them needs one)."""
import json
import shutil

import onnx
import pytest
import torch
from click.testing import CliRunner

from vrfam_rt.backends import open_backend
from vrfam_rt.cli import main
from vrfam_rt.engines.build import build_engines, rtx_target
from vrfam_rt.engines.rtx import DEFAULT_TARGETS
from vrfam_rt.environment import import_tensorrt_rtx
from vrfam_rt.errors import MissingDependency, VrfamError
from vrfam_rt.fileio import sha256_file

try:
    RTX = import_tensorrt_rtx()
except MissingDependency as exc:
    RTX, REASON = None, str(exc)
pytestmark = pytest.mark.skipif(RTX is None, reason=f"needs TensorRT-RTX: "
                                f"{REASON if RTX is None else ''}")
COMPONENTS = ["encoder", "transformer", "generator"]


@pytest.fixture(scope="module")
def exported(tiny_exports):
    """The tiny bundle's fp16/ and fp32/ graphs, exported once per session (conftest)."""
    return tiny_exports[0]


def built(progress_log):
    def progress(component, cached):
        progress_log.append((component, cached))
    return progress


def assert_rtx_plans(out, targets):
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["flavour"], manifest["version"], manifest["gpu"]) == (
        "rtx", RTX.__version__, None)
    assert manifest["compute_capabilities"] == list(targets)
    runtime = RTX.Runtime(RTX.Logger(RTX.Logger.WARNING))
    malformed = int(RTX.EngineInvalidityDiagnostics.MALFORMED_ENGINE)
    for component in COMPONENTS:
        entry = manifest["files"][component]
        plan = (out / entry["plan"]).read_bytes()
        assert sha256_file(out / entry["plan"]) == entry["sha256"] and len(plan) > 1000
        _, diagnostics = runtime.get_engine_validity(plan)
        assert not diagnostics & malformed, component   # a real plan header
    return manifest


def test_the_three_tiny_fp16_graphs_build_for_turing_then_come_from_the_cache(exported,
                                                                              tmp_path):
    out, log = tmp_path / "plans", []
    build_engines(exported / "fp16", out, target=rtx_target(["7.5"]), progress=built(log))
    assert log == [(c, False) for c in COMPONENTS]
    manifest = assert_rtx_plans(out, ["7.5"])
    assert not (out / "timing.cache").exists()            # nothing is timed ahead of time
    build_engines(exported / "fp16", out, target=rtx_target(["7.5"]), progress=built(log))
    assert log[3:] == [(c, True) for c in COMPONENTS]
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_the_default_targets_cover_turing_and_every_later_rtx_generation(exported, tmp_path):
    target = rtx_target()
    assert target.compute_capabilities == DEFAULT_TARGETS and "7.5" in DEFAULT_TARGETS
    build_engines(exported / "fp16", tmp_path / "plans", target=target)
    assert_rtx_plans(tmp_path / "plans", DEFAULT_TARGETS)


def test_another_target_list_or_a_changed_graph_rebuilds(exported, tmp_path):
    onnx_dir, out, log = tmp_path / "fp16", tmp_path / "plans", []
    shutil.copytree(exported / "fp16", onnx_dir)
    build_engines(onnx_dir, out, target=rtx_target(["7.5"]), progress=built(log))
    build_engines(onnx_dir, out, target=rtx_target(["8.6", "7.5"]), progress=built(log))
    assert log[3:] == [(c, False) for c in COMPONENTS]
    assert json.loads((out / "manifest.json").read_text())["compute_capabilities"] == [
        "7.5", "8.6"]                                        # sorted: one key per set
    model = onnx.load(str(onnx_dir / "transformer.onnx"))
    model.doc_string = "re-exported"
    onnx.save(model, str(onnx_dir / "transformer.onnx"))
    build_engines(onnx_dir, out, target=rtx_target(["7.5", "8.6"]), progress=built(log))
    assert log[6:] == [("encoder", True), ("transformer", False), ("generator", True)]


def test_an_fp32_graph_for_turing_is_refused_before_the_builder_runs(exported, tmp_path):
    calls = []
    with pytest.raises(VrfamError, match="no FP32 matrix multiplies for Turing.*export fp16"):
        build_engines(exported / "fp32", tmp_path / "plans", target=rtx_target(["7.5"]),
                      builder=lambda *args: calls.append(args))
    assert calls == [] and not (tmp_path / "plans").exists()


def test_an_fp32_graph_builds_for_ampere_and_later(exported, tmp_path):
    build_engines(exported / "fp32", tmp_path / "plans", target=rtx_target(["8.6"]))
    assert_rtx_plans(tmp_path / "plans", ["8.6"])


def test_the_cli_builds_for_a_2080_ti_without_a_gpu(exported, tmp_path):
    result = CliRunner().invoke(main, ["build-engines", "--onnx", str(exported / "fp16"),
                                       "--out", str(tmp_path / "plans"), "--flavour", "rtx",
                                       "--compute-capability", "7.5", "--max-batch", "4"])
    assert result.exit_code == 0, result.output
    assert f"TensorRT-RTX {RTX.__version__} for sm 7.5" in result.stdout
    manifest = assert_rtx_plans(tmp_path / "plans", ["7.5"])
    assert manifest["files"]["generator"]["profile"]["wplus"]["max"][0] == 4
    result = CliRunner().invoke(main, ["build-engines", "--onnx", str(exported / "fp16"),
                                       "--out", str(tmp_path / "p2"), "--flavour", "rtx",
                                       "--compute-capability", "9.0"])
    assert result.exit_code == 2 and "'9.0' is not one of" in result.stderr


def test_onnx_names_an_export_or_one_of_its_folders_in_every_command(exported, tmp_path):
    """build-engines and bench read --onnx alike: the export's root (build-engines takes
    its fp16 graphs, or --precision's) or one precision folder."""
    def build(*args):
        return CliRunner().invoke(main, ["build-engines", *map(str, args), "--flavour", "rtx",
                                         "--compute-capability", "7.5"])
    root = build("--onnx", exported, "--out", tmp_path / "a")
    assert root.exit_code == 0, root.output
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["precision"] == "fp16"
    fp32 = build("--onnx", exported, "--precision", "fp32", "--out", tmp_path / "b")
    assert fp32.exit_code == 1 and "/fp32 is" in fp32.stderr and "Turing" in fp32.stderr
    missing = build("--onnx", exported, "--precision", "int8-trt", "--out", tmp_path / "c")
    assert missing.exit_code == 1 and "holds no int8-trt graphs" in missing.stderr
    for onnx in (exported, exported / "fp32"):
        bench = CliRunner().invoke(main, ["bench", "--config", "tiny", "--backend", "ort",
                                          "--onnx", str(onnx), "--iters", "1", "--warmup", "0"])
        assert bench.exit_code == 0 and "ort" in bench.stdout, bench.output
    wrong = CliRunner().invoke(main, ["bench", "--config", "tiny", "--backend", "ort",
                                      "--onnx", str(tmp_path), "--iters", "1"])
    assert wrong.exit_code == 1 and "is not an export" in wrong.stderr


@pytest.fixture(scope="module")
def turing_plans(exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("plans")
    build_engines(exported / "fp16", out, target=rtx_target(["7.5"]))
    return out


def test_a_truncated_or_foreign_plan_is_refused_at_load_in_one_line(turing_plans, tmp_path):
    for damage, match in (("truncated", "is missing or corrupt"),
                          ("foreign", "is not a TensorRT-RTX plan")):
        out = tmp_path / damage
        shutil.copytree(turing_plans, out)
        plan = out / "encoder.plan"
        data = plan.read_bytes()
        plan.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"\x07" * len(data))
        if damage == "foreign":                 # recorded as built: only the header is wrong
            manifest = json.loads((out / "manifest.json").read_text())
            manifest["files"]["encoder"]["sha256"] = sha256_file(plan)
            (out / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(VrfamError, match=match) as caught:
            open_backend("trt", engine_dir=out)
        assert "\n" not in str(caught.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_good_plans_stop_at_the_missing_gpu_in_one_line(turing_plans):
    with pytest.raises(MissingDependency, match="ready, but running them needs an NVIDIA GPU"):
        open_backend("trt", engine_dir=turing_plans)


def test_the_int8_trt_encoder_and_generator_build_for_turing(tiny, tiny_exports, tmp_path):
    """`calibrate --target trt` keeps the unquantized part in float16: no FP32 GEMM."""
    from vrfam_rt.calibration.calibrate import calibrate

    shutil.copytree(tiny_exports[0] / "fp32", tmp_path / "fp32")   # the graphs it quantizes
    manifest = calibrate(tiny, tmp_path, ("encoder", "generator"), target="trt", samples=4)
    assert manifest["high_precision_dtype"] == "float16"
    build_engines(tmp_path / "int8-trt", tmp_path / "plans", target=rtx_target(["7.5"]))
    plans = json.loads((tmp_path / "plans" / "manifest.json").read_text())
    assert list(plans["files"]) == ["encoder", "generator"] and plans["precision"] == "int8"


def test_the_build_benchmark_records_each_plan_from_its_own_process(exported, tmp_path):
    from vrfam_rt.benchmarks.engine_builds import main as engine_builds

    engine_builds(["--onnx", str(exported / "fp16"), "--targets", "7.5", "--json",
                   str(tmp_path / "e.json"), "--md", str(tmp_path / "e.md")])
    rows = json.loads((tmp_path / "e.json").read_text())["rows"]
    assert [r["component"] for r in rows] == COMPONENTS
    assert all(r["targets"] == ["7.5"] and r["precision"] == "fp16" and r["plan_mb"] > 0
               and r["peak_rss_gib"] > 0.05 for r in rows)     # a process that loaded torch
    assert (tmp_path / "e.md").read_text().count("| fp16 | 7.5 |") == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("command", [
    ["edit", "vrfam_rt/assets/default/faces/example.png", "--attr", "Smiling", "--no-align"],
    ["bench", "--iters", "1", "--warmup", "0"]])
def test_the_trt_backend_without_a_gpu_builds_the_plans_then_stops_in_one_line(
        command, tmp_path, exported):
    args = [*command, "--config", "tiny", "--backend", "trt"]
    if command[0] == "edit":
        args += ["--out", str(tmp_path / "edits")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the plans in") and "needs an NVIDIA GPU" in lines[-1]
    plans = json.loads((exported / "engines-fp16" / "manifest.json").read_text())
    assert plans["flavour"] == "rtx" and set(plans["files"]) == set(COMPONENTS)
    assert not (tmp_path / "edits").exists()
