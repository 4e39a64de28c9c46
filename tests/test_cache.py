"""The per-bundle cache heals: what the runtime reads is checked against its manifest
(each file hashed once, then stamped), and a damaged folder is said in one line and made
again, also when two opens meet on it."""
import importlib.util
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vrfam_rt import cache as bundle_cache
from vrfam_rt import manifests, on_demand
from vrfam_rt.calibration.data import generator_samples
from vrfam_rt.calibration.quantize import PLAN_VERSION
from vrfam_rt.cli import main
from vrfam_rt.engines.build import build_engines
from vrfam_rt.fileio import sha256_file, staged_dir
from vrfam_rt.manifests import Target

H100 = Target("tensorrt", "10.13.0", ("9.0",), "NVIDIA H100 80GB HBM3")


def edited(runner, image, alphas):
    """The three stages of one backend in turn: image, alphas -> edited image."""
    return runner.generator(runner.transformer(runner.encoder(image), alphas))


@pytest.fixture(scope="module")
def healed(tiny, tmp_path_factory):
    """The runtime opened on a cache whose fp32 manifest is not JSON (the export it makes
    is the one real export of this module, ~16 s): (root, what it said)."""
    root = tmp_path_factory.mktemp("healed")
    folder = on_demand.cache_dir(tiny, root) / "fp32"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"format": "vrfam-rt-onnx", ')
    said = []
    on_demand.open_runtime(tiny, "ort", cache_root=root, say=said.append)
    return root, said


@pytest.fixture(scope="module")
def inputs(tiny):
    images, _ = generator_samples(tiny, 2, seed=5)
    alphas = torch.zeros(2, len(tiny.attributes))
    alphas[:, 0] = 1.0
    return images, alphas


@pytest.fixture(scope="module")
def undamaged(tiny, healed, inputs):
    """{backend: its edit of `inputs`} from the sound cache."""
    backends = ["ort"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    return {backend: edited(on_demand.open_runtime(tiny, backend, cache_root=healed[0]), *inputs)
            for backend in backends}


@pytest.fixture
def cache(tiny, healed, tmp_path, monkeypatch):
    """A copy of the sound cache (fp32 only, no stamps), whose export makes the fp32
    folder again by copying the sound one (`cache.exports` lists them;
    `cache.export_seconds` makes one last that long), and whose calibration writes the
    sound fp32 encoder and generator as INT8 graphs (`cache.calibrations` lists them)."""
    sound = on_demand.cache_dir(tiny, healed[0]) / "fp32"
    folder = on_demand.cache_dir(tiny, tmp_path)
    shutil.copytree(sound, folder / "fp32", ignore=shutil.ignore_patterns(".*"))

    class Cache:
        root, fp32, exports, export_seconds, calibrations = tmp_path, folder / "fp32", [], 0.0, []

    def export_bundle(bundle, out, precisions=("fp32",), *args, **kwargs):
        Cache.exports.append(precisions)
        time.sleep(Cache.export_seconds)
        with staged_dir(out / "fp32", "export", "test stand-in export", force=True) as tmp:
            shutil.copytree(sound, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))

    def calibrate(bundle, out, components, target, **kwargs):
        Cache.calibrations.append(target)
        held = manifests.read(sound, "export")
        with staged_dir(out / f"int8-{target}", "INT8 export", "test stand-in calibration",
                        force=True) as tmp:
            for component in components:
                shutil.copy(sound / held["files"][component]["file"], tmp)
            manifests.write(tmp, "export", held | {
                "precision": "int8", "target": target, "plan": PLAN_VERSION,
                "files": {c: held["files"][c] for c in components}})

    monkeypatch.setattr("vrfam_rt.export.lowering.export_bundle", export_bundle)
    monkeypatch.setattr("vrfam_rt.calibration.calibrate.calibrate", calibrate)
    return Cache


def notes(said: list[str]) -> list[str]:
    return [line for line in said if line.startswith("note:")]


def truncate(folder):
    path = folder / "encoder.onnx"
    path.write_bytes(path.read_bytes()[:1000])


def delete(folder):
    (folder / "generator.onnx").unlink()


def break_json(folder):
    (folder / "manifest.json").write_text("{")


def wrong_hash(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["transformer"]["sha256"]["transformer.onnx"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {"truncated": (truncate, "encoder.onnx: size 1000, expected "),
          "deleted": (delete, "generator.onnx: missing"),
          "not JSON": (break_json, "manifest.json: not valid JSON"),
          "wrong hash": (wrong_hash, "transformer.onnx: sha256 differs from the manifest's")}


def test_a_damaged_manifest_is_said_in_one_line_and_the_graphs_exported_again(healed, tiny,
                                                                              inputs):
    root, said = healed
    [note] = notes(said)
    folder = on_demand.cache_dir(tiny, root) / "fp32"
    assert note.startswith(f"note: the cached fp32 graphs in {folder} are damaged "
                           "(manifest.json: not valid JSON (")
    assert said[1].startswith("exporting fp32 ONNX")
    runner = on_demand.open_runtime(tiny, "ort", cache_root=root)
    eager = on_demand.open_runtime(tiny, "eager")
    assert torch.allclose(edited(runner, *inputs), edited(eager, *inputs), atol=1e-4)


@pytest.mark.parametrize("backend", ["ort", "openvino"])
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cached_graph_is_said_and_made_again(damage, backend, tiny, cache, inputs,
                                                      undamaged):
    if backend == "openvino":
        pytest.importorskip("openvino")
    spoil, problem = DAMAGE[damage]
    spoil(cache.fp32)
    said = []
    runner = on_demand.open_runtime(tiny, backend, cache_root=cache.root, say=said.append)
    [note] = notes(said)
    assert note.startswith(f"note: the cached fp32 graphs in {cache.fp32} are damaged "
                           f"({problem}") and note.endswith("; rebuilding them")
    assert cache.exports == [("fp32",)]
    assert torch.allclose(edited(runner, *inputs), undamaged[backend], atol=1e-5)
    said.clear()
    on_demand.open_runtime(tiny, backend, cache_root=cache.root, say=said.append)
    assert said == [] and cache.exports == [("fp32",)]


@pytest.mark.parametrize("backend,target", [("ort", "cpu"), ("openvino", "openvino")])
def test_damaged_int8_graphs_are_said_and_calibrated_again(backend, target, tiny, cache, inputs):
    if backend == "openvino":
        pytest.importorskip("openvino")
    sound = edited(on_demand.open_runtime(tiny, backend, "int8", cache_root=cache.root), *inputs)
    folder = on_demand.cache_dir(tiny, cache.root) / f"int8-{target}"
    truncate(folder)
    said = []
    runner = on_demand.open_runtime(tiny, backend, "int8", cache_root=cache.root,
                                  say=said.append)
    assert notes(said) == [f"note: the cached INT8 graphs for {target} in {folder} are "
                           f"damaged (encoder.onnx: size 1000, expected "
                           f"{(cache.fp32 / 'encoder.onnx').stat().st_size}); rebuilding them"]
    assert cache.calibrations == [target, target] and cache.exports == []
    assert torch.allclose(edited(runner, *inputs), sound, atol=1e-5)


def test_each_file_is_hashed_once_then_trusted_while_its_stat_matches_its_stamp(tiny, cache,
                                                                              monkeypatch):
    hashed = []

    def sha256(path):
        hashed.append(path.name)
        return sha256_file(path)

    monkeypatch.setattr(bundle_cache, "sha256_file", sha256)
    on_demand.open_runtime(tiny, "ort", cache_root=cache.root)
    assert sorted(hashed) == ["encoder.onnx", "generator.onnx", "transformer.onnx"]
    hashed.clear()
    on_demand.open_runtime(tiny, "ort", cache_root=cache.root)
    assert hashed == []
    os.utime(cache.fp32 / "generator.onnx")            # touched: hashed again, still sound
    said = []
    on_demand.open_runtime(tiny, "ort", cache_root=cache.root, say=said.append)
    assert hashed == ["generator.onnx"] and said == [] and cache.exports == []


def test_a_fresh_export_is_stamped_as_it_is_made(tiny, cache, monkeypatch):
    """The first open after a rebuild reads no graph again."""
    truncate(cache.fp32)
    on_demand.open_runtime(tiny, "ort", cache_root=cache.root)
    hashed = []
    monkeypatch.setattr(bundle_cache, "sha256_file", lambda path: hashed.append(path) or "")
    on_demand.open_runtime(tiny, "ort", cache_root=cache.root)
    assert hashed == [] and len(cache.exports) == 1


def test_two_opens_of_a_damaged_cache_take_turns_and_both_run(tiny, cache, inputs, undamaged):
    """The first makes the graphs again while the second waits; the second finds them."""
    truncate(cache.fp32)
    cache.export_seconds = 0.5                  # room for an unlocked second open to begin
    said, outputs, errors = [], [], []

    def open_and_edit():
        try:
            runner = on_demand.open_runtime(tiny, "ort", cache_root=cache.root, say=said.append)
            outputs.append(edited(runner, *inputs))
        except Exception as exc:                # the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=open_and_edit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(outputs) == 2
    assert len(notes(said)) == 1 and cache.exports == [("fp32",)]
    for out in outputs:
        assert torch.allclose(out, undamaged["ort"], atol=1e-5)


def test_a_changed_openvino_compiled_model_is_said_and_compiled_again(tiny, cache, inputs,
                                                                      undamaged):
    """OpenVINO loads a blob with damaged weights and computes NaNs: a blob that changed
    since it was first seen goes, with the rest of OpenVINO's cache."""
    pytest.importorskip("openvino")
    edited(on_demand.open_runtime(tiny, "openvino", cache_root=cache.root), *inputs)
    on_demand.open_runtime(tiny, "openvino", cache_root=cache.root)    # stamps the blobs
    blob = max((on_demand.cache_dir(tiny, cache.root) / "openvino").glob("*.blob"),
               key=lambda p: p.stat().st_size)
    with open(blob, "r+b") as f:                # the middle: weights, not the header
        f.seek(blob.stat().st_size // 2)
        f.write(os.urandom(1 << 16))
    said = []
    runner = on_demand.open_runtime(tiny, "openvino", cache_root=cache.root, say=said.append)
    assert notes(said) == [f"note: the cached OpenVINO compiled models in {blob.parent} are "
                           f"damaged ({blob.name}: changed since it was compiled); rebuilding "
                           "them"]
    assert torch.allclose(edited(runner, *inputs), undamaged["openvino"], atol=1e-5)


def test_damaged_plans_are_said_and_the_folder_goes(tiny, cache):
    """A plan folder (built here with a stand-in builder) with a truncated plan or a
    manifest that is not JSON: build_engines could not read the latter at all."""
    plans = on_demand.cache_dir(tiny, cache.root) / "engines-fp32"

    def build():
        build_engines(cache.fp32, plans, target=H100,
                      builder=lambda onnx_path, *args: onnx_path.stem.encode() * 100)

    with bundle_cache.locked(plans):        # as a build that failed before its first plan
        pass
    said = []
    assert bundle_cache.usable(plans, "engines", tiny.digest, "fp32 plans", said.append)
    build()
    assert bundle_cache.usable(plans, "engines", tiny.digest, "fp32 plans", said.append)
    assert said == []
    for spoil, problem in [(lambda: (plans / "encoder.plan").write_bytes(b"plan"),
                            "encoder.plan: size 4, expected 700"),
                           (lambda: (plans / "manifest.json").write_text("[]"),
                            "manifest.json: not a vrfam-rt-engines manifest")]:
        spoil()
        said = []
        assert not bundle_cache.usable(plans, "engines", tiny.digest, "fp32 plans", said.append)
        assert said == [f"note: the cached fp32 plans in {plans} are damaged ({problem}); "
                        "rebuilding them"]
        assert not plans.exists() and not list(plans.parent.glob(".engines-fp32*"))
        build()


def test_a_read_only_cache_is_read_unlocked(tiny, cache, monkeypatch):
    """No lock file can be made there, and nothing there can change: the open goes on."""
    on_demand.open_runtime(tiny, "ort", cache_root=cache.root)        # stamps, makes .lock
    lock = on_demand.cache_dir(tiny, cache.root) / ".lock"
    lock.unlink()

    def read_only(path, *args, **kwargs):
        if path == lock:
            raise PermissionError(13, "Permission denied")
        return open(path, *args, **kwargs)

    monkeypatch.setattr(bundle_cache, "open", read_only, raising=False)
    on_demand.open_runtime(tiny, "ort", cache_root=cache.root)
    assert not lock.exists() and cache.exports == []


def test_external_data_is_checked_with_its_graph(tiny, cache):
    """A graph past 2 GiB keeps its weights in `<graph>.onnx.data`, listed beside it."""
    data = cache.fp32 / "encoder.onnx.data"
    data.write_bytes(b"w" * 100)
    manifest = json.loads((cache.fp32 / "manifest.json").read_text())
    entry = manifest["files"]["encoder"]
    entry["sha256"]["encoder.onnx.data"] = sha256_file(data)
    entry["bytes"] += 100
    (cache.fp32 / "manifest.json").write_text(json.dumps(manifest))
    assert bundle_cache.problem(cache.fp32, "export", tiny.digest) is None
    data.write_bytes(b"w" * 99 + b"x")
    assert bundle_cache.problem(cache.fp32, "export", tiny.digest) == \
        "encoder.onnx.data: sha256 differs from the manifest's"
    data.write_bytes(b"w" * 10)
    assert bundle_cache.problem(cache.fp32, "export", tiny.digest) == \
        f"encoder.onnx + encoder.onnx.data: size {entry['bytes'] - 90}, expected {entry['bytes']}"


def test_edit_on_a_damaged_cache_says_so_and_exits_0(tiny, cache, tmp_path, monkeypatch):
    """The command of the report: a truncated cached graph was a traceback on every
    later `vrfam-rt edit --backend ort`."""
    truncate(cache.fp32)
    monkeypatch.setenv("VRFAM_RT_CACHE", str(cache.root))
    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80, 3), np.uint8)).save(photo)
    result = CliRunner().invoke(main, ["edit", str(photo), "--config", "tiny", "--seed", "0",
                                       "--backend", "ort", "--no-align", "--attr",
                                       tiny.attributes[0], "--out", str(tmp_path / "out")])
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "Traceback" not in result.output
    [note] = notes(result.stderr.splitlines())
    assert "encoder.onnx: size 1000" in note
    assert len(list((tmp_path / "out").glob("face_*.png"))) == 1
