"""INT8 calibration: Q/DQ graphs per target, their zero points, and the measured figures."""
import json
import logging

import onnx
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vrfam_rt import Bundle
from vrfam_rt.backends import open_backend
from vrfam_rt.calibration.calibrate import calibrate
from vrfam_rt.calibration.data import generator_samples
from vrfam_rt.calibration.quantize import check_symmetric_int8, zero_points
from vrfam_rt.cli import main
from vrfam_rt.errors import VrfamError
from vrfam_rt.export.parity import psnr


@pytest.fixture(scope="module")
def bundle():
    return Bundle.random("tiny", seed=0)


@pytest.fixture(scope="module")
def trt_int8(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    return out, calibrate(bundle, out, ("encoder", "generator"), target="trt", samples=8)


def test_trt_target_is_symmetric_signed_int8_per_channel(trt_int8):
    out, manifest = trt_int8
    for component in ("encoder", "generator"):
        model = onnx.load(str(out / "int8-trt" / f"{component}.onnx"))
        points = zero_points(model)
        assert points and all(dtype == "int8" and not any(v) for dtype, v in points.values())
        check_symmetric_int8(model, component)
        per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                       and any(a.name == "axis" for a in n.attribute)]
        assert per_channel, "conv weights are quantized per output channel"
    assert manifest["target"] == "trt" and manifest["precision"] == "int8"


def test_trt_target_computes_its_unquantized_part_in_float16(trt_int8):
    """Turing builds no FP32 matrix multiply: every float initializer of the trt graphs is
    float16 but Resize's scales (float32 by the ONNX spec); the I/O stays float32."""
    out, manifest = trt_int8
    assert manifest["high_precision_dtype"] == "float16"
    for component in ("encoder", "generator"):
        model = onnx.load(str(out / "int8-trt" / f"{component}.onnx"))
        resize_inputs = {i for n in model.graph.node if n.op_type == "Resize" for i in n.input}
        floats = [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
        assert set(floats) <= resize_inputs, floats[:3]
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
        io = [*model.graph.input, *model.graph.output]
        assert {v.type.tensor_type.elem_type for v in io} == {onnx.TensorProto.FLOAT}


# INT8 with per-channel weights and calibrated activation ranges keeps the tiny encoder's
# codes: measured 0.09 (cpu) and 0.11 (trt, float16 outside Q/DQ) of the input-dependent
# part of W+, against 1 for codes that ignore the input; 7e-4 to 8e-4 of all of W+;
# generator PSNR 38-40 dB
INT8_WPLUS_REL_ERR = 0.3


def wplus_errors(w8: torch.Tensor, w32: torch.Tensor) -> tuple[float, float]:
    """(error relative to the input-dependent part of W+, error relative to all of W+)."""
    centred = w32 - w32.mean(0, keepdim=True)
    return ((w8 - w32).norm() / centred.norm()).item(), ((w8 - w32).norm() / w32.norm()).item()


def test_cpu_target_uses_uint8_activations(bundle, tmp_path):
    manifest = calibrate(bundle, tmp_path, ("encoder",), target="cpu", method="max", samples=4)
    model = onnx.load(str(tmp_path / "int8-cpu" / "encoder.onnx"))
    dtypes = {dtype for dtype, _ in zero_points(model).values()}
    assert "uint8" in dtypes
    with pytest.raises(VrfamError, match="TensorRT needs symmetric int8"):
        check_symmetric_int8(model, "encoder.onnx")
    assert manifest["metrics"]["encoder"]["wplus_rel_err"] < INT8_WPLUS_REL_ERR


def test_the_recorded_int8_errors_are_the_measured_ones(trt_int8, bundle):
    out, manifest = trt_int8
    encoder = manifest["metrics"]["encoder"]
    assert set(encoder) == {"wplus_rel_err", "wplus_rel_err_total", "image_psnr_db",
                            "attribute_agreement", "fp32_ms", "int8_ms", "speedup"}
    images, wplus = generator_samples(bundle, manifest["metrics"]["eval_samples"], seed=1)
    int8 = open_backend("ort", onnx_dir=out / "int8-trt")
    with torch.no_grad():
        w32, w8 = bundle.encoder(images), int8.encoder(images)
        # the report measures against ONNX Runtime FP32, which is eager FP32 to ~1e-7
        assert wplus_errors(w8, w32) == pytest.approx(
            (encoder["wplus_rel_err"], encoder["wplus_rel_err_total"]), rel=1e-3)
        assert encoder["image_psnr_db"] == pytest.approx(
            psnr(bundle.generator(w32), bundle.generator(w8)), abs=0.05)
        agree = ((bundle.classifier(w8) > 0) == (bundle.classifier(w32) > 0)).float().mean()
        assert encoder["attribute_agreement"] == pytest.approx(agree.item())
        assert manifest["metrics"]["generator"]["image_psnr_db"] == pytest.approx(
            psnr(bundle.generator(wplus), int8.generator(wplus)), abs=0.05)
    assert encoder["wplus_rel_err"] < INT8_WPLUS_REL_ERR and encoder["image_psnr_db"] > 50
    assert manifest["metrics"]["generator"]["image_psnr_db"] > 30
    assert json.loads((out / "int8-trt" / "manifest.json").read_text())["metrics"] == manifest["metrics"]
    assert sorted(p.name for p in (out / "int8-trt").iterdir()) == [
        "encoder.onnx", "generator.onnx", "manifest.json"]


def test_int8_folder_runs_in_the_ort_backend_close_to_fp32(trt_int8, bundle):
    out, _ = trt_int8
    images, _ = generator_samples(bundle, 4, seed=5)        # not the calibration inputs
    backend = open_backend("ort", onnx_dir=out / "int8-trt")
    with torch.no_grad():
        reference = bundle.encoder(images)
    w = backend.encoder(images)
    assert w.shape == reference.shape
    relative, total = wplus_errors(w, reference)
    assert relative < INT8_WPLUS_REL_ERR and total < 0.01


def test_calibration_from_an_image_folder_through_the_cli(tmp_path, caplog, recwarn):
    """... and no third-party advice (ONNX Runtime's quantizer logs some) reaches the user."""
    caplog.set_level(logging.INFO)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.effect_noise((80, 70), 40 + 10 * i).convert("RGB").save(folder / f"p{i}.png")
    (folder / "notes.txt").write_text("not an image")
    result = CliRunner().invoke(main, ["calibrate", "--config", "tiny", "--images", str(folder),
                                       "--out", str(tmp_path / "q"), "--target", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "q" / "int8-cpu" / "manifest.json").read_text())
    assert manifest["calibration"] == {"images": str(folder), "count": 3}
    assert "speedup" in result.stdout
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "pre-processing" not in result.output and len(recwarn) == 0, \
        [str(w.message) for w in recwarn]


@pytest.mark.parametrize("args,match,code", [
    (["--config", "tiny"], "exactly one of --images DIR or --samples N", 2),
    (["--config", "tiny", "--samples", "2", "--components", "transformer"], "is not one of", 2),
    (["--config", "tiny", "--images", "/nonexistent"], "no such folder", 1),
])
def test_calibrate_argument_errors(tmp_path, args, match, code):
    result = CliRunner().invoke(main, ["calibrate", "--out", str(tmp_path / "q"), *args])
    assert result.exit_code == code and match in result.stderr
    assert not (tmp_path / "q" / "int8-trt").exists()


def test_an_existing_int8_folder_is_kept_unless_forced(trt_int8, bundle):
    out, manifest = trt_int8
    with pytest.raises(VrfamError, match="already exists"):
        calibrate(bundle, out, ("encoder",), samples=2)
    assert json.loads((out / "int8-trt" / "manifest.json").read_text())["metrics"] == manifest["metrics"]
