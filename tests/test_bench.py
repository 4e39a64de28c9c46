"""`vrfam-rt bench` and `make gpu-check`: schema, arithmetic and the CPU dry run."""
import importlib.util
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from vrfam_rt import Bundle
from vrfam_rt.benchmarks import gpu_check as gpu_check_mod
from vrfam_rt.benchmarks.bench import flops_per_image
from vrfam_rt.cli import main

RUN_KEYS = {"backend", "precision", "batch", "stage", "p50_ms", "p90_ms", "p99_ms",
            "images_per_s", "gflops", "speedup_vs_eager"}


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = CliRunner().invoke(main, [
        "bench", "--config", "tiny", "--backend", "eager", "--backend", "ort",
        "--precision", "fp32", "--precision", "bf16", "--batch", "1", "--batch", "2",
        "--iters", "2", "--warmup", "1", "--threads", "2",
        "--json", str(out / "b.json"), "--plot", str(out / "b.png")])
    assert result.exit_code == 0, result.output
    return json.loads((out / "b.json").read_text()), out, result.stdout


def test_json_schema(bench_json):
    data, _, _ = bench_json
    assert {"config", "device", "flops_per_image", "runs"} <= set(data)
    assert data["config"] == "tiny"
    assert all(set(r) == RUN_KEYS for r in data["runs"])
    combos = {(r["backend"], r["precision"], r["batch"], r["stage"]) for r in data["runs"]}
    assert combos == {(b, p, n, s) for b, p in (("eager", "fp32"), ("eager", "bf16"), ("ort", "fp32"))
                      for n in (1, 2) for s in ("encoder", "transformer", "generator", "total")}


def test_figures_follow_from_the_latencies(bench_json):
    data, _, _ = bench_json
    flops = data["flops_per_image"]
    assert flops["total"] == flops["encoder"] + flops["transformer"] + flops["generator"]
    eager = {(r["batch"], r["stage"]): r for r in data["runs"]
             if (r["backend"], r["precision"]) == ("eager", "fp32")}
    for r in data["runs"]:
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1000 / r["p50_ms"])
        assert r["gflops"] == pytest.approx(flops[r["stage"]] * r["batch"] / r["p50_ms"] / 1e6)
        base = eager[(r["batch"], r["stage"])]["p50_ms"]
        assert r["speedup_vs_eager"] == pytest.approx(base / r["p50_ms"])


def test_table_and_plot(bench_json):
    _, out, stdout = bench_json
    assert "p50 ms" in stdout and "vs eager" in stdout
    with Image.open(out / "b.png") as img:
        assert img.format == "PNG" and img.height > 100


@pytest.mark.full
def test_flop_counts_match_the_compute_anchors():
    """e4e at 256: ~72.5 GMAC; StyleGAN2 config-f 1024 synthesis: ~75.4 GMAC."""
    flops = flops_per_image(Bundle.random("ffhq-1024", seed=0,
                                          components=("generator", "encoder", "transformer")))
    assert flops["encoder"] / 2e9 == pytest.approx(72.5, rel=0.01)
    assert flops["generator"] / 2e9 == pytest.approx(75.4, rel=0.01)


def test_ort_int8_needs_a_calibrated_folder(tmp_path):
    result = CliRunner().invoke(main, ["bench", "--config", "tiny", "--backend", "ort",
                                       "--precision", "int8"])
    assert result.exit_code == 1 and "int8-cpu" in result.stderr


def test_gpu_check_without_a_gpu_says_so(tmp_path):
    result = CliRunner().invoke(main, ["gpu-check", "--out", str(tmp_path / "g")])
    assert result.exit_code == 2 and "needs an NVIDIA GPU" in result.stderr
    assert not (tmp_path / "g").exists()


def test_gpu_check_dry_run_without_exporter_or_tensorrt(tmp_path, monkeypatch):
    """Without onnxscript and TensorRT those steps are reported as skipped; the eager
    paths still run, are compared and timed, and `vrfam-rt edit` runs end to end."""
    real = importlib.util.find_spec
    monkeypatch.setattr(gpu_check_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real(name, *a))
    result = CliRunner().invoke(main, ["gpu-check", "--config", "tiny", "--device", "cpu",
                                       "--out", str(tmp_path / "g"), "--batch", "1",
                                       "--iters", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "g" / "gpu-check.json").read_text())
    assert report["steps"]["export"]["status"].startswith("skipped")
    assert report["steps"]["build fp16 engines"]["status"].startswith("skipped")
    assert report["psnr_vs_eager_fp32_db"]["eager bf16"] > 20
    assert {(r["backend"], r["precision"]) for r in report["bench"]} == {("eager", "fp32"),
                                                                        ("eager", "bf16")}
    assert "x1.00 vs eager fp32" in (tmp_path / "g" / "gpu-check.txt").read_text()
    assert report["steps"]["edit CLI"]["status"] == "ok"
    assert "grace_hopper_grid.png" in report["edit_cli"]["written"]


@pytest.mark.parametrize("backend", ["eager", "ort"])
def test_profile_reports_stages_layers_and_peaks(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("VRFAM_RT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    result = CliRunner().invoke(main, ["profile", "--config", "tiny", "--backend", backend,
                                       "--iters", "1", "--top", "2",
                                       "--json", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "p.json").read_text())
    assert [s["stage"] for s in data["stages"]] == ["encoder", "transformer", "generator", "total"]
    assert all(0 < s["peak_fraction"] < 1 for s in data["stages"])
    assert {l["stage"] for l in data["layers"]} == {"encoder", "transformer", "generator"}
    assert all(l["ms"] >= 0 for l in data["layers"])
    names = {p["device"] for p in data["peaks"]}
    assert "this CPU" in names and "NVIDIA GeForce RTX 2080 Ti" in names
    assert "slowest 2 layers per stage" in result.stdout
    assert not any((tmp_path / "cwd").iterdir())       # no profiler trace left behind
    if backend == "ort":
        assert any("Conv" in l["layer"] for l in data["layers"])
    else:
        assert any(l["layer"].startswith("convs.") for l in data["layers"])


def test_glibc_keeps_freed_memory_for_the_cli():
    from vrfam_rt.environment import keep_freed_memory
    assert keep_freed_memory() is True        # glibc here; a no-op (False) elsewhere
