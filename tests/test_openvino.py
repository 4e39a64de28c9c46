"""The OpenVINO backend (fp32, bf16, int8 on the CPU) and `--backend auto`."""
import json
import shutil

import onnx
import pytest
import torch
from click.testing import CliRunner

from vrfam_rt import on_demand
from vrfam_rt.backends import open_backend
from vrfam_rt.backends import openvino as ov_backend
from vrfam_rt.backends.eager import EagerBackend
from vrfam_rt.calibration.data import generator_samples
from vrfam_rt.calibration.quantize import zero_points
from vrfam_rt.cli import main
from vrfam_rt.errors import MissingDependency, VrfamError
from vrfam_rt.export.parity import psnr

pytest.importorskip("openvino", reason="the openvino backend needs `pip install openvino`")


@pytest.fixture(scope="module")
def inputs(tiny):
    images, wplus = generator_samples(tiny, 3, seed=11)
    alphas = torch.zeros(3, len(tiny.attributes))
    alphas[:, 0] = 1.0
    return images, wplus, alphas


@pytest.fixture(scope="module")
def eager(tiny, inputs):
    images, wplus, alphas = inputs
    runner = EagerBackend(tiny)
    with torch.no_grad():
        return {"encoder": runner.encoder(images), "transformer": runner.transformer(wplus, alphas),
                "generator": runner.generator(wplus)}


def stages(runner, inputs) -> dict[str, torch.Tensor]:
    images, wplus, alphas = inputs
    return {"encoder": runner.encoder(images), "transformer": runner.transformer(wplus, alphas),
            "generator": runner.generator(wplus)}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_fp32_is_the_eager_computation(tiny_exports, inputs, eager, tmp_path):
    """float32 throughout: only summation order differs (relative error ~1e-6 per layer)."""
    runner = open_backend("openvino", onnx_dir=tiny_exports[0] / "fp32", precision="fp32",
                          cache_dir=tmp_path / "ov")
    assert (runner.name, runner.precision, runner.device.type) == ("openvino", "fp32", "cpu")
    out = stages(runner, inputs)
    for stage, reference in eager.items():
        assert out[stage].dtype == torch.float32 and out[stage].shape == reference.shape
        assert rel(out[stage], reference) < 1e-4, stage
    assert any((tmp_path / "ov").iterdir())           # compiled blobs cached for the next process


def test_each_batch_size_gets_its_own_compiled_stage(tiny_exports, inputs):
    """Static shapes per batch, the last KEPT_SHAPES kept per stage: a sample's result
    does not depend on its batch."""
    images, _, _ = inputs
    runner = open_backend("openvino", onnx_dir=tiny_exports[0] / "fp32")
    one = runner.encoder(images[:1])
    assert list(runner._compiled["encoder"]) == [((1, *images.shape[1:]),)]
    three = runner.encoder(images)
    assert list(runner._compiled["encoder"]) == [((1, *images.shape[1:]),), (tuple(images.shape),)]
    assert rel(three[:1], one) < 1e-5 and list(runner._compiled) == ["encoder"]
    for batch in (2, 1, 4, 5):             # the least recently used shape goes first
        runner.encoder(images[:1].expand(batch, -1, -1, -1))
    assert [shapes[0][0] for shapes in runner._compiled["encoder"]] == [2, 1, 4, 5]


@pytest.mark.skipif(not ov_backend.has_bf16(__import__("openvino").Core()),
                    reason="this CPU has no bf16 hardware (AVX-512 BF16 or AMX)")
def test_bf16_stays_close_to_fp32(tiny_exports, inputs, eager):
    """bf16 keeps 8 mantissa bits (relative rounding 2^-9 per op, fp32 accumulation):
    errors of a few 1e-3 relative through the network, far from a different picture."""
    runner = open_backend("openvino", onnx_dir=tiny_exports[0] / "fp32", precision="bf16")
    assert runner.precision == "bf16" and runner.note is None
    out = stages(runner, inputs)
    assert rel(out["encoder"], eager["encoder"]) < 0.02
    assert psnr(eager["generator"], out["generator"]) > 30


def test_bf16_without_bf16_hardware_says_so_and_runs_fp32(tiny_exports, monkeypatch):
    monkeypatch.setattr(ov_backend, "has_bf16", lambda core: False)
    runner = open_backend("openvino", onnx_dir=tiny_exports[0] / "fp32", precision="bf16")
    assert runner.precision == "fp32" and runner.hint == "f32"
    assert "no bf16 hardware" in runner.note


def test_int8_is_calibrated_into_the_cache_once(tiny, tiny_exports, inputs, eager, tmp_path):
    """The int8 encoder and generator are the Q/DQ graphs of `calibrate --target openvino`,
    made on demand from the cached fp32 graphs; the transformer runs from those."""
    cache = on_demand.cache_dir(tiny, tmp_path)
    shutil.copytree(tiny_exports[0] / "fp32", cache / "fp32")
    said = []
    runner = on_demand.open_runtime(tiny, "openvino", "int8", cache_root=tmp_path, say=said.append)
    assert any("calibrating INT8" in line for line in said)
    assert not any("export" in line for line in said), said     # the cached graphs serve
    manifest = json.loads((cache / "int8-openvino" / "manifest.json").read_text())
    assert set(manifest["files"]) == {"encoder", "generator"}
    # OpenVINO's fastest forms: signed symmetric encoder activations, uint8 generator ones
    encoder = zero_points(onnx.load(str(cache / "int8-openvino" / "encoder.onnx")))
    assert encoder and all(dtype == "int8" and not any(v) for dtype, v in encoder.values())
    generator = zero_points(onnx.load(str(cache / "int8-openvino" / "generator.onnx")))
    assert "uint8" in {dtype for dtype, _ in generator.values()}
    assert manifest["calibration"]["generator_samples"] == on_demand.CALIBRATION_SAMPLES
    assert runner.precision == "int8" and runner.fallback.folder == cache / "fp32"
    out = stages(runner, inputs)
    assert rel(out["transformer"], eager["transformer"]) < 1e-2
    assert rel(out["encoder"], eager["encoder"]) < 0.05
    assert psnr(eager["generator"], out["generator"]) > 25
    said.clear()
    on_demand.open_runtime(tiny, "openvino", "int8", cache_root=tmp_path, say=said.append)
    assert not any("calibrating" in line or "note:" in line for line in said)
    # graphs of an older calibration (no plan recorded) are used, with a note on redoing them
    path = cache / "int8-openvino" / "manifest.json"
    path.write_text(json.dumps({k: v for k, v in manifest.items() if k != "plan"}))
    said.clear()
    on_demand.open_runtime(tiny, "openvino", "int8", cache_root=tmp_path, say=said.append)
    [note] = [line for line in said if line.startswith("note:")]
    assert "earlier or partial calibration" in note and "--force" in note


@pytest.mark.parametrize("folder,match", [("fp16", "OpenVINO compiles the fp32 export"),
                                          ("fp32", "runs int8 from int8-openvino graphs")])
def test_graphs_of_another_kind_are_refused(tiny_exports, folder, match):
    precision = "int8" if folder == "fp32" else "fp32"
    with pytest.raises(VrfamError, match=match):
        open_backend("openvino", onnx_dir=tiny_exports[0] / folder, precision=precision)


def test_without_openvino_the_backend_says_what_to_install(tiny_exports, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(MissingDependency, match="pip install openvino"):
        open_backend("openvino", onnx_dir=tiny_exports[0] / "fp32")


def test_edit_defaults_to_auto_and_says_what_it_chose(tiny_exports, tmp_path):
    from vrfam_rt.images import save_png, to_pil

    photo = tmp_path / "face.png"
    save_png(to_pil(generator_samples(__import__("vrfam_rt").Bundle.random("tiny", seed=0),
                                      1, seed=3)[0][0]), photo)
    result = CliRunner().invoke(main, ["edit", str(photo), "--config", "tiny", "--attr",
                                       "Smiling", "--no-align", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "backend auto: openvino" in result.stderr
    assert (tmp_path / "out" / "face_Smiling+1.0.png").is_file()
