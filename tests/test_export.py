"""ONNX lowering: the contract's files, TensorRT-compatible, equal to eager through ONNX Runtime."""
import json

import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper

from vrfam_rt import Bundle
from vrfam_rt.backends import open_backend
from vrfam_rt.cli import main
from vrfam_rt.errors import VrfamError
from vrfam_rt.export.compat import check_model
from vrfam_rt.export.fp16 import Float16Rounding, emulate_fp16
from vrfam_rt.export.parity import psnr
from vrfam_rt.export.lowering import StageGraph, policy_module

CONTRACT = {"encoder": (["image"], ["wplus"]), "transformer": (["wplus", "alphas"], ["wplus_edited"]),
            "generator": (["wplus"], ["image"])}


@pytest.fixture(scope="module")
def exported(tiny_exports):
    """`vrfam-rt export --config tiny --verify` (conftest): (out dir, JSON results, output)."""
    return tiny_exports


@pytest.fixture(scope="module")
def bundle():
    return Bundle.random("tiny", seed=0)


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_files_have_the_contract_names_shapes_and_float32_io(exported, precision):
    out, _, _ = exported
    shapes = {"image": [3, 64, 64], "wplus": [10, 64], "alphas": [9], "wplus_edited": [10, 64]}
    for component, (inputs, outputs) in CONTRACT.items():
        model = onnx.load(str(out / precision / f"{component}.onnx"))
        graph_io = list(model.graph.input) + list(model.graph.output)
        assert [v.name for v in model.graph.input] == inputs
        assert [v.name for v in model.graph.output] == outputs
        for value in graph_io:
            assert dims(value) == ["batch"] + shapes[value.name]
            assert value.type.tensor_type.elem_type == TensorProto.FLOAT


def test_manifest_records_bundle_precision_versions_io_and_hashes(exported, bundle):
    from vrfam_rt.fileio import sha256_file
    out, _, _ = exported
    for precision in ("fp32", "fp16"):
        manifest = json.loads((out / precision / "manifest.json").read_text())
        assert manifest["bundle_digest"] == bundle.digest
        assert manifest["precision"] == precision and manifest["opset"] == 18
        assert {"torch", "onnx", "vrfam-rt"} <= set(manifest["versions"])
        assert manifest["attributes"] == list(bundle.attributes)
        for component, entry in manifest["files"].items():
            assert entry["sha256"][entry["file"]] == sha256_file(out / precision / entry["file"])
            assert [i["name"] for i in entry["inputs"]] == CONTRACT[component][0]
            assert entry["outputs"][0]["dtype"] == "float32"


def test_fp32_graphs_match_eager_at_batch_1_and_3(exported):
    _, results, stdout = exported
    rows = [r for r in results["parity"] if r["precision"] == "fp32"]
    assert {(r["component"], r["batch"]) for r in rows} == {
        (c, b) for c in CONTRACT for b in (1, 3)}
    assert all(r["ok"] for r in rows), rows
    assert max(r["max_abs"] for r in rows if r["component"] == "generator") <= 1e-4
    assert "parity: ONNX Runtime vs eager PyTorch" in stdout and "FP16 by emulation" in stdout


def test_transformer_graph_applies_several_alphas_one_after_another(exported, bundle):
    out, _, _ = exported
    backend = open_backend("ort", onnx_dir=out / "fp32")
    w = torch.randn(2, 10, 64)
    alphas = torch.zeros(2, 9)
    alphas[0, :3] = torch.tensor([1.0, -0.5, 1.5])
    alphas[1, [1, 4, 8]] = torch.tensor([0.7, 1.2, -1.0])
    expected = []
    with torch.no_grad():
        for b in range(2):
            wb = w[b:b + 1]
            for k, attr in enumerate(bundle.attributes):
                if alphas[b, k]:
                    wb = bundle.transformer.edit(wb, attr, alphas[b, k].item())
            expected.append(wb)
    expected = torch.cat(expected)
    got = backend.transformer(w, alphas)
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= 1e-4
    assert torch.equal(backend.transformer(w, torch.zeros(2, 9)), w)


def test_batch_axis_is_dynamic(exported, bundle):
    out, _, _ = exported
    backend = open_backend("ort", onnx_dir=out / "fp32")
    w = torch.randn(5, 10, 64)
    with torch.no_grad():
        assert torch.allclose(backend.generator(w), bundle.generator(w), atol=1e-4)


def test_fp16_graphs_hold_float16_weights_and_list_what_stays_float32(exported):
    out, _, _ = exported
    manifest = json.loads((out / "fp16" / "manifest.json").read_text())
    for component, entry in manifest["files"].items():
        model = onnx.load(str(out / "fp16" / entry["file"]))
        convs = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
        weights = [t for t in model.graph.initializer if t.name in convs]
        assert weights and all(t.data_type == TensorProto.FLOAT16 for t in weights
                               if "expand" not in t.name), component
        assert entry["fp32_nodes"] and all(n["reason"] for n in entry["fp32_nodes"])
    reasons = {n["reason"].split(":")[0] for n in manifest["files"]["generator"]["fp32_nodes"]}
    assert reasons == {"graph output", "RGB skip path", "style max-normalisation"}


def test_fp16_emulation_is_finite_and_close(exported):
    _, results, _ = exported
    report = results["fp16_emulation"]
    assert all(r["finite"] for r in report.values())
    assert report["generator"]["psnr_db"] >= 40
    assert report["encoder"]["rel_l2"] < 1e-2 and report["transformer"]["rel_l2"] < 1e-2


def test_fp16_safe_generator_keeps_the_fp32_output(bundle):
    """Pre-normalised styles/weights and the 256 clamp change FP32 output by < 1e-5 relative."""
    safe = policy_module(bundle, "generator", "fp16")
    w = torch.randn(3, 10, 64)
    with torch.no_grad():
        ref = bundle.generator(w, fused=True)
        assert ((safe(w) - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_half_generator_still_returns_a_float32_image(bundle):
    graph = StageGraph(policy_module(bundle, "generator", "fp16"), torch.float16)
    with torch.no_grad():
        image = graph(torch.randn(1, 10, 64))
    assert image.dtype == torch.float32 and torch.isfinite(image).all()


def test_float16_rounding_rounds_every_operation():
    with Float16Rounding():
        x = torch.ones(1) + 1e-4                  # below float16 resolution at 1.0
        y = torch.full((1,), 70000.0) * 1.0       # above the float16 range
    assert x.item() == 1.0 and torch.isinf(y).all()
    linear = torch.nn.Linear(4, 4)
    out = emulate_fp16(linear, torch.randn(2, 4))
    assert torch.equal(out, out.half().float())


def test_psnr_uses_the_reference_range_as_peak():
    ref = torch.tensor([-1.0, 1.0, 0.0, 0.0])
    assert psnr(ref, ref + 0.02) == pytest.approx(20 * torch.log10(torch.tensor(2 / 0.02)).item())


# ---- the TensorRT-compatibility check ----------------------------------------------------
def graph(nodes, inputs=None, outputs=None, initializers=(), opset=18):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


W = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], [0.0] * 9)


def test_a_graph_tensorrt_builds_passes():
    check_model(graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                      initializers=[W]), "ok.onnx")


@pytest.mark.parametrize("nodes,match", [
    ([helper.make_node("Unique", ["x"], ["y"], name="uniq")], "node 'uniq' (Unique) is not supported"),
    ([helper.make_node("RandomNormalLike", ["x"], ["y"], name="rnd")], "node 'rnd' (RandomNormalLike) is random"),
    ([helper.make_node("Dropout", ["x"], ["y"], name="drop")], "node 'drop' (Dropout) is random or training-only"),
    ([helper.make_node("Relu", ["x"], ["w2"], name="make_w"),
      helper.make_node("Conv", ["x", "w2"], ["y"], name="conv")], "node 'conv' (Conv) reads weights 'w2' computed at run time"),
    ([helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.microsoft")], "custom domain"),
])
def test_incompatible_nodes_are_named(nodes, match):
    with pytest.raises(VrfamError, match=match.replace("(", r"\(").replace(")", r"\)")):
        check_model(graph(nodes), "bad.onnx")


def test_only_the_batch_axis_may_be_dynamic():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", 8])
    with pytest.raises(VrfamError, match="axis 2 of 'x' is dynamic"):
        check_model(graph([helper.make_node("Relu", ["x"], ["y"], name="r")], inputs=[x]), "d.onnx")
    fixed = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    with pytest.raises(VrfamError, match="axis 0 of 'x' is fixed"):
        check_model(graph([helper.make_node("Relu", ["x"], ["y"], name="r")], inputs=[fixed]), "d.onnx")


def test_double_tensors_and_old_opsets_are_refused():
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", 3, 8, 8])
    with pytest.raises(VrfamError, match="'y' has dtype float64"):
        check_model(graph([helper.make_node("Cast", ["x"], ["y"], to=11, name="c")], outputs=[y]), "f.onnx")
    with pytest.raises(VrfamError, match="opset 8"):
        check_model(graph([helper.make_node("Relu", ["x"], ["y"], name="r")], opset=8), "o.onnx")


# ---- CLI refusals --------------------------------------------------------------------------
def test_export_keeps_an_existing_folder_unless_forced(exported):
    out, _, _ = exported
    before = (out / "fp32" / "manifest.json").read_text()
    result = CliRunner().invoke(main, ["export", "--config", "tiny", "--out", str(out),
                                       "--precision", "fp32", "--components", "transformer"])
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (out / "fp32" / "manifest.json").read_text() == before


@pytest.mark.parametrize("args,match", [
    (["--config", "tiny", "--precision", "fp8"], "'fp8' is not one of fp32, fp16"),
    (["--config", "tiny", "--components", "decoder"], "'decoder' is not one of"),
    (["--config", "tiny", "--bundle", "b"], ", not both"),
])
def test_export_argument_errors(tmp_path, args, match):
    result = CliRunner().invoke(main, ["export", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and match in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_bundle_without_the_component_is_refused_before_any_work(tmp_path, bundle):
    partial = Bundle(bundle.config, {"generator": bundle.generator})
    partial.save(tmp_path / "b")
    result = CliRunner().invoke(main, ["export", "--bundle", str(tmp_path / "b"), "--out",
                                       str(tmp_path / "o"), "--components", "encoder"])
    assert result.exit_code == 1 and "has no encoder" in result.stderr
    assert not (tmp_path / "o" / "fp32").exists()


def test_ort_backend_errors_name_the_folder(tmp_path, exported):
    with pytest.raises(VrfamError, match="holds no manifest.json"):
        open_backend("ort", onnx_dir=tmp_path)
    out, _, _ = exported
    with pytest.raises(VrfamError, match="unknown `backend=.tensorflow.`"):
        open_backend("tensorflow", onnx_dir=out / "fp32")


def test_weights_past_the_protobuf_limit_go_to_an_external_data_file(tmp_path, bundle, monkeypatch):
    from vrfam_rt.export import lowering
    monkeypatch.setattr(lowering, "EXTERNAL_DATA_BYTES", 0)   # as if the weights were > 2 GB
    manifest = lowering.export_bundle(bundle, tmp_path, ("fp32",), ("transformer",))["fp32"]
    entry = manifest["files"]["transformer"]
    assert entry["external_data"] == ["transformer.onnx.data"]
    assert set(entry["sha256"]) == {"transformer.onnx", "transformer.onnx.data"}
    assert (tmp_path / "fp32" / "transformer.onnx").stat().st_size < entry["bytes"] / 5
    w, alphas = torch.randn(2, 10, 64), torch.rand(2, 9)
    with torch.no_grad():
        expected = bundle.transformer(w, alphas)
    got = open_backend("ort", onnx_dir=tmp_path / "fp32", threads=1).transformer(w, alphas)
    assert torch.allclose(got, expected, atol=1e-5)
