"""Plan building around TensorRT: profiles, cache keys, stale and corrupt plans, locks.

TensorRT cannot run here; the orchestration is exercised with a recording builder in
place of `build_plan`, and the tests that need TensorRT itself skip with the reason.
"""
import json
import multiprocessing
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from vrfam_rt.backends import open_backend
from vrfam_rt.cli import main
from vrfam_rt.engines.build import BuildOptions, build_engines
from vrfam_rt.engines.cache import engine_key
from vrfam_rt import manifests
from vrfam_rt.manifests import Target
from vrfam_rt.engines.profiles import batch_profile
from vrfam_rt.environment import tensorrt_status
from vrfam_rt.errors import MissingDependency, VrfamError
from vrfam_rt.fileio import sha256_file

H100 = Target("tensorrt", "10.9.0", ("9.0",), "NVIDIA H100 80GB HBM3")
TURING = Target("tensorrt", "10.9.0", ("7.5",), "NVIDIA GeForce RTX 2080 Ti")
IO = {"encoder": ([("image", [3, 64, 64])], [("wplus", [10, 64])]),
      "transformer": ([("wplus", [10, 64]), ("alphas", [9])], [("wplus_edited", [10, 64])]),
      "generator": ([("wplus", [10, 64])], [("image", [3, 64, 64])])}


def spec(items):
    return [{"name": n, "shape": ["batch", *s], "dtype": "float32"} for n, s in items]


@pytest.fixture
def onnx_dir(tmp_path):
    """An export folder as `vrfam-rt export` lays it out (file contents are opaque here)."""
    folder = tmp_path / "onnx" / "fp16"
    folder.mkdir(parents=True)
    files = {}
    for component, (inputs, outputs) in IO.items():
        (folder / f"{component}.onnx").write_bytes(component.encode() * 100)
        files[component] = {"file": f"{component}.onnx",
                            "sha256": {f"{component}.onnx": sha256_file(folder / f"{component}.onnx")},
                            "inputs": spec(inputs), "outputs": spec(outputs)}
    manifests.write(folder, "export", {"precision": "fp16", "bundle_digest": "abc",
                                       "attributes": ["Smiling"], "max_batch": 16,
                                       "files": files})
    return folder


class Recorder:
    """Stands in for build_plan: returns plan bytes derived from its inputs, counts calls."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, onnx_path, profile, options, timing_cache):
        self.calls.append(Path(onnx_path).stem)
        if self.fail_on == Path(onnx_path).stem:
            raise KeyboardInterrupt
        return f"plan:{Path(onnx_path).read_bytes()[:8]}:{json.dumps(profile)}".encode()


def test_profile_spans_batch_1_to_max_with_fixed_other_axes():
    profile = batch_profile(spec(IO["transformer"][0]), max_batch=8, opt_batch=4)
    assert profile == {"wplus": {"min": [1, 10, 64], "opt": [4, 10, 64], "max": [8, 10, 64]},
                       "alphas": {"min": [1, 9], "opt": [4, 9], "max": [8, 9]}}
    assert batch_profile(spec(IO["generator"][0]), 2)["wplus"]["opt"] == [2, 10, 64]


@pytest.mark.parametrize("kwargs,match", [
    ({"max_batch": 4, "opt_batch": 8}, "`opt_batch=8` must lie in 1..4 \\(the max batch\\)"),
    ({"max_batch": 32, "export_max_batch": 16}, "exceeds the ONNX export's max batch 16"),
])
def test_profile_errors(kwargs, match):
    with pytest.raises(VrfamError, match=match):
        batch_profile(spec(IO["generator"][0]), **kwargs)


def test_profile_refuses_a_dynamic_non_batch_axis():
    with pytest.raises(VrfamError, match="only a dynamic batch"):
        batch_profile([{"name": "image", "shape": ["batch", 3, "h", 64]}], 4)


def test_engine_key_covers_onnx_tensorrt_gpu_profile_and_options():
    profile, options = {"x": {"min": [1], "opt": [4], "max": [8]}}, {"opt_level": 3}
    base = engine_key("sha", H100, profile, options)
    assert base == engine_key("sha", Target(*vars(H100).values()), profile, options)
    variants = [engine_key("sha2", H100, profile, options),
                engine_key("sha", TURING, profile, options),
                engine_key("sha", Target("tensorrt", "11.0.0", ("9.0",), H100.gpu), profile,
                           options),
                engine_key("sha", Target("tensorrt", "10.9.0", ("9.1",), H100.gpu), profile,
                           options),
                engine_key("sha", H100, {"x": {"min": [1], "opt": [8], "max": [8]}}, options),
                engine_key("sha", H100, profile, {"opt_level": 5})]
    assert len({base, *variants}) == 7


def test_plans_are_built_once_and_then_reused(onnx_dir, tmp_path):
    out, builder = tmp_path / "plans", Recorder()
    manifest = build_engines(onnx_dir, out, max_batch=4, target=H100, builder=builder)
    assert builder.calls == ["encoder", "transformer", "generator"]
    entry = manifest["files"]["generator"]
    assert (manifest["flavour"], manifest["version"], manifest["gpu"],
            manifest["compute_capabilities"]) == ("tensorrt", "10.9.0", H100.gpu, ["9.0"])
    assert entry["onnx_sha256"] == sha256_file(onnx_dir / "generator.onnx")
    assert entry["profile"]["wplus"]["max"] == [4, 10, 64]
    assert entry["builder"] == {"workspace_gib": 8.0, "opt_level": 3, "refittable": False}
    assert entry["sha256"] == sha256_file(out / "generator.plan") and "build_seconds" in entry
    build_engines(onnx_dir, out, max_batch=4, target=H100, builder=builder)
    assert len(builder.calls) == 3


def test_another_gpu_tensorrt_or_profile_rebuilds(onnx_dir, tmp_path):
    out, builder = tmp_path / "plans", Recorder()
    build_engines(onnx_dir, out, max_batch=4, target=H100, builder=builder)
    build_engines(onnx_dir, out, max_batch=4, target=TURING, builder=builder)
    assert len(builder.calls) == 6
    assert json.loads((out / "manifest.json").read_text())["files"]["encoder"]["target"]["gpu"] == TURING.gpu
    build_engines(onnx_dir, out, max_batch=8, target=TURING, builder=builder)
    build_engines(onnx_dir, out, max_batch=8, target=TURING, builder=builder,
                  options=BuildOptions(opt_level=5))
    assert len(builder.calls) == 12


def test_changed_onnx_rebuilds_only_that_plan(onnx_dir, tmp_path):
    out, builder = tmp_path / "plans", Recorder()
    build_engines(onnx_dir, out, target=H100, builder=builder)
    (onnx_dir / "transformer.onnx").write_bytes(b"re-exported")
    build_engines(onnx_dir, out, target=H100, builder=builder)
    assert builder.calls[3:] == ["transformer"]


def test_a_corrupt_plan_is_rebuilt_never_reused(onnx_dir, tmp_path):
    out, builder = tmp_path / "plans", Recorder()
    build_engines(onnx_dir, out, target=H100, builder=builder)
    (out / "encoder.plan").write_bytes(b"truncated")
    build_engines(onnx_dir, out, target=H100, builder=builder)
    assert builder.calls[3:] == ["encoder"]
    assert sha256_file(out / "encoder.plan") == json.loads(
        (out / "manifest.json").read_text())["files"]["encoder"]["sha256"]


def test_an_interrupted_build_keeps_the_finished_plans_and_no_temp_files(onnx_dir, tmp_path):
    out = tmp_path / "plans"
    with pytest.raises(KeyboardInterrupt):
        build_engines(onnx_dir, out, target=H100, builder=Recorder(fail_on="transformer"))
    names = sorted(p.name for p in out.iterdir())
    assert names == [".lock", "encoder.plan", "manifest.json"]
    assert list(json.loads((out / "manifest.json").read_text())["files"]) == ["encoder"]
    builder = Recorder()
    build_engines(onnx_dir, out, target=H100, builder=builder)
    assert builder.calls == ["transformer", "generator"]


def _log(log: str, *words) -> None:
    with open(log, "a") as f:          # one short append: atomic between processes
        f.write(" ".join(map(str, words)) + "\n")


def _logged_build(onnx_dir: str, out: str, log: str, ready) -> None:
    """One process of the concurrent build: log `enter`, then build with a builder that
    logs `start`/`end` around each plan and, on its first plan, holds that build open
    until both processes have entered build_engines (and a while longer)."""
    import os

    def builder(onnx_path, profile, options, timing_cache):
        _log(log, "start", Path(onnx_path).stem, os.getpid())
        deadline = time.monotonic() + 20
        while Path(log).read_text().count("enter") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)                # room for an unlocked second build to begin
        _log(log, "end", Path(onnx_path).stem, os.getpid())
        return b"plan-" + Path(onnx_path).stem.encode()
    ready.wait(timeout=20)             # both processes start together
    _log(log, "enter", os.getpid())
    build_engines(Path(onnx_dir), Path(out), target=H100, builder=builder)


def test_concurrent_builds_of_one_folder_are_serialised_and_build_each_plan_once(onnx_dir,
                                                                                 tmp_path):
    out, log = tmp_path / "plans", tmp_path / "log"
    log.touch()
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(2)
    workers = [context.Process(target=_logged_build, args=(str(onnx_dir), str(out), str(log),
                                                           ready)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    events = [line.split() for line in log.read_text().splitlines()]
    first_end = next(i for i, e in enumerate(events) if e[0] == "end")
    assert sum(e[0] == "enter" for e in events[:first_end]) == 2   # the builds did contend
    builds = [e for e in events if e[0] != "enter"]
    # no overlap: every start is followed by its own end before the next start
    assert [e[0] for e in builds] == ["start", "end"] * 3
    assert all(builds[i][1:] == builds[i + 1][1:] for i in range(0, 6, 2))
    assert sorted(e[1] for e in builds[::2]) == ["encoder", "generator", "transformer"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"encoder", "transformer", "generator"}
    for entry in manifest["files"].values():
        assert sha256_file(out / entry["plan"]) == entry["sha256"]


def test_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(VrfamError, match="holds no manifest.json"):
        build_engines(tmp_path, tmp_path / "out", target=H100, builder=Recorder())


@pytest.mark.skipif(tensorrt_status()[0], reason="TensorRT and a GPU are present")
def test_without_tensorrt_the_tensorrt_flavour_says_what_is_missing_in_one_line(onnx_dir,
                                                                               tmp_path):
    result = CliRunner().invoke(main, ["build-engines", "--onnx", str(onnx_dir), "--out",
                                       str(tmp_path / "plans"), "--flavour", "tensorrt"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TensorRT" in lines[0] and "pip install" in lines[0]
    assert not (tmp_path / "plans").exists()


TRT_READY, TRT_REASON = tensorrt_status()


@pytest.mark.skipif(not TRT_READY, reason=f"needs TensorRT and an NVIDIA GPU: {TRT_REASON}")
def test_fp16_plans_render_the_eager_picture(tmp_path):
    import torch

    from vrfam_rt import Bundle
    from vrfam_rt.export.parity import psnr
    from vrfam_rt.export.lowering import export_bundle

    bundle = Bundle.random("tiny", seed=0)
    export_bundle(bundle, tmp_path / "onnx", ("fp16",))
    build_engines(tmp_path / "onnx" / "fp16", tmp_path / "plans", max_batch=4)
    trt = open_backend("trt", engine_dir=tmp_path / "plans", device="cuda")
    w = torch.randn(2, 10, 64)
    with torch.no_grad():
        reference = bundle.generator(w)
    assert psnr(reference, trt.generator(w.cuda()).cpu()) >= 40
