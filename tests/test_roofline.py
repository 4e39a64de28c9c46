"""`vrfam-rt profile --roofline`: FLOPs, bytes and bounds from the ONNX graphs alone."""
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from vrfam_rt.benchmarks.bench import flops_per_image
from vrfam_rt.benchmarks.roofline import GPUS, MATMUL_OPS, analyse, bound_ms
from vrfam_rt.cli import main


def test_conv_and_gemm_flops_and_bytes_of_a_hand_built_graph(tmp_path):
    """x [B,8,16,16] -> Conv 3x3, 8->4, pad 1 -> [B,4,16,16] -> Flatten -> Gemm 1024->10."""
    w = numpy_helper.from_array(np.zeros((4, 8, 3, 3), np.float16), "w")
    g = numpy_helper.from_array(np.zeros((10, 1024), np.float16), "g")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Flatten", ["y"], ["f"], name="flat"),
         helper.make_node("Gemm", ["f", "g"], ["z"], transB=1, name="fc")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 8, 16, 16])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT16, ["batch", 10])], [w, g])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]),
              str(tmp_path / "m.onnx"))
    result = analyse(tmp_path / "m.onnx", batch=2)
    layers = {l["layer"]: l for l in result["layers"]}
    assert layers["conv"]["flops"] == 2 * (2 * 4 * 16 * 16) * (8 * 3 * 3)     # 73,728
    assert layers["fc"]["flops"] == 2 * (2 * 10) * 1024
    assert layers["flat"]["flops"] == 0
    assert layers["conv"]["weight_bytes"] == 4 * 8 * 9 * 2                    # float16
    assert layers["conv"]["activation_bytes"] == (2 * 8 * 256 + 2 * 4 * 256) * 2
    assert result["io_bytes"] == (2 * 8 * 256 + 2 * 10) * 2
    gpu = GPUS["rtx-2080-ti"]
    # 1e12 FLOPs on 56.9 TFLOP/s beat 1 MB on 616 GB/s; 1 GB of weights is memory-bound
    assert bound_ms(1e12, 1e6, gpu, "fp16") == pytest.approx(1e3 * 1e12 / 56.9e12)
    assert bound_ms(1e6, 1e9, gpu, "fp16") == pytest.approx(1e3 * 1e9 / 616e9)
    assert bound_ms(1e12, 0, gpu, "fp32") == pytest.approx(1e3 * 1e12 / 13.45e12)


def test_the_cli_bounds_every_stage_and_counts_the_eager_flops(tmp_path, tiny, tiny_exports):
    result = CliRunner().invoke(main, ["profile", "--config", "tiny", "--roofline",
                                       "rtx-2080-ti", "--precision", "fp16", "--top", "2",
                                       "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "not a measurement" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == ["encoder", "transformer", "generator", "total"]
    assert stages["total"]["bound_ms"] == pytest.approx(
        sum(stages[s]["bound_ms"] for s in ("encoder", "transformer", "generator")))
    # the matrix products of the graph are the multiply-adds torch's counter sees
    eager = flops_per_image(tiny)
    for stage in ("encoder", "generator"):
        graph = sum(l["flops"] for l in report["layers"]
                    if l["stage"] == stage and l["op"] in MATMUL_OPS)
        assert graph == pytest.approx(eager[stage], rel=0.01), stage
    result = CliRunner().invoke(main, ["profile", "--config", "tiny", "--roofline", "h200",
                                       "--precision", "int8"])
    assert result.exit_code == 2 and "fp16 or fp32" in result.stderr
