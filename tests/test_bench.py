"""`vrfam-rt bench` and `make gpu-check`: schema, arithmetic and the CPU dry run."""
import importlib.util
import json
import platform
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from vrfam_rt import Bundle
from vrfam_rt.backends.openvino import has_bf16
from vrfam_rt.benchmarks import gpu_check as gpu_check_mod
from vrfam_rt.benchmarks.bench import (STAGES, Config, add_floor, flops_per_image,
                                       measure_fp32_peak, noisy, stage_rows)
from vrfam_rt.cli import main

RUN_KEYS = {"backend", "precision", "batch", "stage", "p50_ms", "p90_ms", "p99_ms",
            "images_per_s", "gflops", "speedup_vs_eager", "floor_ms", "x_floor"}


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory, tiny_exports):
    out = tmp_path_factory.mktemp("bench")
    result = CliRunner().invoke(main, [
        "bench", "--config", "tiny", "--backend", "eager", "--backend", "ort,openvino",
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
    flops = data["flops_per_image"]
    assert flops["total"] == flops["encoder"] + flops["transformer"] + flops["generator"]
    assert all(r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] for r in data["runs"])
    combos = {(r["backend"], r["precision"], r["batch"], r["stage"]) for r in data["runs"]}
    # without bf16 hardware OpenVINO's bf16 runs (and is labelled) fp32
    ov_bf16 = "bf16" if has_bf16(__import__("openvino").Core()) else "fp32"
    assert combos == {(b, p, n, s) for b, p in (("eager", "fp32"), ("eager", "bf16"), ("ort", "fp32"),
                                                ("openvino", "fp32"), ("openvino", ov_bf16))
                      for n in (1, 2) for s in ("encoder", "transformer", "generator", "total")}
    peak = data["fp32_peak"]
    assert peak["gflops"] == max(peak["measured"].values()) and peak["threads"] == 2
    assert data["cpu"]["model"] and data["cpu"]["cores"] >= 1
    for r in data["runs"]:
        assert r["floor_ms"] == pytest.approx(
            flops[r["stage"]] * r["batch"] / (peak["gflops"] * 1e9) * 1e3)
        assert r["x_floor"] == pytest.approx(r["p50_ms"] / r["floor_ms"])


def test_the_floor_is_the_work_at_the_measured_peak():
    """100 GFLOP/s: a 2-GFLOP stage has a 20 ms floor per image, 40 ms at batch 2."""
    rows = [{"stage": "encoder", "batch": 2, "p50_ms": 60.0}]
    add_floor(rows, {"encoder": 2e9}, 100.0)
    assert rows[0]["floor_ms"] == pytest.approx(40.0) and rows[0]["x_floor"] == pytest.approx(1.5)
    peak = measure_fp32_peak(repeats=1)
    assert set(peak["measured"]) == {"matmul 2048^3", "conv3x3 512ch 64x64"}
    assert peak["gflops"] > 1 and peak["kernel"] in peak["measured"]


def test_figures_of_known_latencies():
    """p50/p90/p99 by linear interpolation, images/s, GFLOP/s and speed-up, worked by hand
    for latencies 10, 20, 30, 40 ms of a batch of 2 against an eager p50 of 50 ms."""
    config = Config("ort", "fp32", runner=None)
    samples = {stage: [40.0, 10.0, 30.0, 20.0] for stage in STAGES}
    baseline = {stage: [50.0, 50.0, 49.0, 51.0] for stage in STAGES}
    flops = {"encoder": 5e9, "transformer": 1e8, "generator": 2e9, "total": 7.1e9}
    rows = {r["stage"]: r for r in stage_rows(config, 2, samples, flops, baseline)}
    assert list(rows) == list(STAGES)
    encoder = rows["encoder"]
    assert (encoder["p50_ms"], encoder["p90_ms"]) == pytest.approx((25.0, 37.0))
    assert encoder["p99_ms"] == pytest.approx(39.7)
    assert encoder["images_per_s"] == pytest.approx(80.0)       # 2 images per 25 ms
    assert encoder["gflops"] == pytest.approx(400.0)            # 10 GFLOP per 25 ms
    assert rows["total"]["gflops"] == pytest.approx(568.0)      # 14.2 GFLOP per 25 ms
    assert encoder["speedup_vs_eager"] == pytest.approx(2.0)    # 50 ms / 25 ms
    assert stage_rows(config, 2, samples, flops, None)[0]["speedup_vs_eager"] is None


def test_a_wide_latency_spread_warns_that_the_machine_was_busy():
    config = Config("ort", "fp32", runner=None)
    flops = {stage: 1e9 for stage in STAGES}
    steady = stage_rows(config, 1, {s: [10.0, 10.5, 11.0, 10.2] for s in STAGES}, flops, None)
    assert noisy(steady) == []
    busy = {s: [10.0, 10.0, 10.0, 40.0] for s in STAGES}       # p50 10 ms, p90 31 ms
    [warning] = noisy(stage_rows(config, 4, busy, flops, None))   # one line: the whole edit
    assert warning.startswith("warning: ort fp32 batch 4: p90 is 3.1x p50") and "busy" in warning


def test_table_and_plot(bench_json):
    _, out, stdout = bench_json
    assert "p50 ms" in stdout and "vs eager" in stdout and "x floor" in stdout
    assert stdout.startswith("FP32 floor: ") and "GFLOP/s" in stdout.splitlines()[0]
    with Image.open(out / "b.png") as img:
        assert img.format == "PNG" and img.height > 100


@pytest.mark.full
def test_flop_counts_match_the_compute_anchors():
    """e4e at 256: ~72.5 GMAC; StyleGAN2 config-f 1024 synthesis: ~75.4 GMAC."""
    flops = flops_per_image(Bundle.random("ffhq-1024", seed=0,
                                          components=("generator", "encoder", "transformer")))
    assert flops["encoder"] / 2e9 == pytest.approx(72.5, rel=0.01)
    assert flops["generator"] / 2e9 == pytest.approx(75.4, rel=0.01)


def test_int8_of_an_onnx_folder_without_int8_graphs_says_how_to_make_them(tiny_exports, tiny):
    """(Without --onnx, int8 is calibrated into the cache.) The hint is a command that
    works as printed: its options parse, and name the same bundle and the folder."""
    import shlex

    from vrfam_rt.cli.common import bundle_from

    root = tiny_exports[0]
    result = CliRunner().invoke(main, ["bench", "--config", "tiny", "--backend", "openvino",
                                       "--precision", "int8", "--onnx", str(root / "fp32")])
    assert result.exit_code == 1 and "int8-openvino" in result.stderr
    hint = shlex.split(result.stderr.split("`")[1])
    assert hint[:2] == ["vrfam-rt", "calibrate"]
    context = main.commands["calibrate"].make_context("calibrate", hint[2:])
    p = context.params
    assert bundle_from(p["bundle_path"], p["config"], p["seed"], p["method"]).digest == tiny.digest
    assert p["target"] == "openvino" and p["samples"] and p["out"] == root


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
    text = (tmp_path / "g" / "gpu-check.txt").read_text()
    bf16 = next(r for r in report["bench"] if r["precision"] == "bf16" and r["stage"] == "total")
    line = next(line for line in text.splitlines() if line.strip().startswith("eager  bf16"))
    assert line.endswith(f"x{bf16['speedup_vs_eager']:.2f} vs eager fp32")
    assert report["steps"]["edit CLI"]["status"] == "ok"
    assert "grace_hopper_grid.png" in report["edit_cli"]["written"]


@pytest.mark.parametrize("backend", ["eager", "ort", "openvino"])
def test_profile_reports_stages_layers_and_peaks(backend, tmp_path, monkeypatch, tiny_exports):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    result = CliRunner().invoke(main, ["profile", "--config", "tiny", "--backend", backend,
                                       "--iters", "1", "--top", "2",
                                       "--json", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "p.json").read_text())
    assert [s["stage"] for s in data["stages"]] == ["encoder", "transformer", "generator", "total"]
    assert data["peaks"][0]["device"] == "this CPU"          # the fraction is of this CPU's
    for s in data["stages"]:
        assert s["peak_fraction"] == pytest.approx(s["gflops"] / data["peaks"][0]["gflops"])
    assert {l["stage"] for l in data["layers"]} == {"encoder", "transformer", "generator"}
    assert "NVIDIA GeForce RTX 2080 Ti" in {p["device"] for p in data["peaks"]}
    assert "slowest 2 layers per stage" in result.stdout
    assert not any((tmp_path / "cwd").iterdir())       # no profiler trace left behind
    if backend == "ort":
        assert any("Conv" in l["layer"] for l in data["layers"])
    elif backend == "openvino":                      # node (type, kernel), e.g. brgconv_avx512
        assert any("(Convolution, " in l["layer"] for l in data["layers"])
    else:
        assert any(l["layer"].startswith("convs.") for l in data["layers"])


FREED_RSS = """
import os, sys, torch
from vrfam_rt.environment import keep_freed_memory
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True
before = rss()
block = torch.ones(64 * 2**20)        # 256 MiB, written
del block
print((rss() - before) / 2**20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_keeps_freed_memory_for_the_cli():
    """Each in a fresh process (mallopt is process-wide and cannot be undone): by default a
    freed 256 MiB block goes back to the system; after keep_freed_memory it stays mapped for
    the next layer."""
    def retained_mib(mode):
        out = subprocess.run([sys.executable, "-c", FREED_RSS, mode], capture_output=True,
                             text=True, check=True, timeout=120)
        return float(out.stdout)
    assert retained_mib("default") < 64 and retained_mib("keep") > 192


def test_cpu_result_files_are_named_by_family_and_widest_kernels():
    from vrfam_rt.benchmarks.cpu_quality import cpu_label

    assert cpu_label({"model": "Intel(R) Xeon(R) Processor",
                      "flags": ["avx2", "avx512f", "amx_bf16", "amx_int8"]}) == "xeon-amx"
    assert cpu_label({"model": "AMD EPYC 7B13 64-Core Processor", "flags": ["avx2"]}) == "epyc-avx2"
    assert cpu_label({"model": "", "flags": []}) == "cpu-sse"
