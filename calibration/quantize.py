"""INT8 explicit quantization (Q/DQ ONNX) with ONNX Runtime's static quantizer.

Each target gets the graphs its runtime runs fastest:
- `trt`: symmetric signed int8 everywhere (zero points 0, per-channel weights), the
  only Q/DQ form TensorRT builds;
- `cpu`: uint8 activations x int8 per-channel weights, the form ONNX Runtime's x86
  int8 kernels run fast (its s8 x s8 convolutions are slower than FP32);
- `openvino`: the encoder's activations signed and symmetric (OpenVINO runs them 13%
  faster than uint8 with zero points: ffhq-1024 encoder, batch 1, p50 173 vs 199 ms in
  one interleaved run on the AMX Xeon, as fast as NNCF's own post-training INT8 at
  172 ms, W+ error 1.4e-4 vs 1.3e-4 and 1.5e-4), the generator's as `cpu` (signed:
  402 vs 406 ms, 38.6 vs 39.7 dB; NNCF's default 381 ms but 19.7 dB).
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import torch

from vrfam_rt.environment import quiet_logs
from vrfam_rt.errors import VrfamError

TARGETS = ("trt", "cpu", "openvino")
SIGNED_ACTIVATIONS = {"trt": ("encoder", "generator"), "cpu": (), "openvino": ("encoder",)}
METHODS = ("entropy", "max", "percentile")
QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]

# What each network quantizes by default (`--calibration auto`). Min-max ranges for
# both: calibration runs one sample at a time (bounded memory), and min-max ranges merge
# exactly across samples, where entropy's histograms are re-binned at each merge (tiny
# encoder, trt target: W+ error 0.30 of its input-dependent part one sample at a time,
# against 0.11 all at once and 0.11 for min-max either way). The generator quantizes
# its regular 3x3 convolutions only; on random ffhq-1024 weights, INT8 vs FP32 image
# (OpenVINO, 8 calibration samples, bf16 elsewhere): entropy 19.0 dB, min-max on every
# op 33.2 dB, min-max on the convolutions but blur and toRGB 36.1 dB, and with the
# transposed (upsampling) convolutions in float too 39.8 dB, also the fastest
# (p50 212 vs 222 ms plain bf16, same interleaved run; OpenVINO runs those in bf16
# anyway, the Q/DQ around them only added reorders). Style affines (Gemm) and
# demodulation (MatMul) stay float: a few percent of the FLOPs.
PLAN_VERSION = 3        # recorded by `--calibration auto`; 1 was entropy on every op, 2 had
#                         8-bit weights under uint8 activations (saturating without VNNI)
PLANS = {"encoder": {"method": "max", "op_types": QUANTIZED_OPS, "float_convs": False},
         "generator": {"method": "max", "op_types": ["Conv"], "float_convs": True}}


def fixed_or_rgb_convs(model) -> list[str]:
    """The Conv nodes left in float in the generator: depthwise ones (the fixed blur
    kernels) and those with 3 output channels (toRGB)."""
    weights = {t.name: t for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = weights.get(node.input[1])
        if group > 1 or (weight is not None and weight.dims[0] == 3):
            found.append(node.name)
    return found


def quantize_component(component: str, fp32_path: Path, out_path: Path,
                       inputs: dict[str, torch.Tensor], target: str, method: str) -> str:
    """Quantize one network by its plan (PLANS; `method` "auto" takes the plan's, another
    overrides it); returns the method used."""
    import onnx

    plan = PLANS[component]
    method = plan["method"] if method == "auto" else method
    exclude = (fixed_or_rgb_convs(onnx.load(str(fp32_path), load_external_data=False))
               if plan["float_convs"] else [])
    quantize_onnx(fp32_path, out_path, inputs, target, method, plan["op_types"], exclude,
                  signed=component in SIGNED_ACTIVATIONS.get(target, ()))
    return method


class _Reader:
    """CalibrationDataReader over tensors, one sample per call, within the range the
    quantizer sets (`set_range`: it calibrates one stride of samples at a time)."""

    def __init__(self, inputs: dict[str, torch.Tensor]):
        self.names = list(inputs)
        self.count = len(next(iter(inputs.values())))
        self.inputs = inputs
        self.index, self.end = 0, self.count

    def __len__(self) -> int:
        return self.count

    def set_range(self, start_index: int, end_index: int) -> None:
        self.index, self.end = start_index, min(end_index, self.count)

    def get_next(self):
        if self.index >= self.end:
            return None
        i, self.index = self.index, self.index + 1
        return {n: self.inputs[n][i:i + 1].float().numpy() for n in self.names}

    def rewind(self):
        self.index, self.end = 0, self.count


def quantize_onnx(fp32_path: Path, out_path: Path, inputs: dict[str, torch.Tensor],
                  target: str = "trt", method: str = "entropy", op_types=None,
                  exclude=(), signed: bool | None = None) -> None:
    """Write the INT8 Q/DQ version of an FP32 ONNX file, calibrated on `inputs`:
    the ops of `op_types` (default QUANTIZED_OPS) but the nodes named in `exclude`;
    activations signed and symmetric if `signed` (default: for `trt`), else uint8."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    if target not in TARGETS:
        raise VrfamError(f"unknown INT8 target {target!r}; choose from {', '.join(TARGETS)}")
    if method not in METHODS:
        raise VrfamError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(inputs)
    symmetric = target == "trt" if signed is None else signed
    # The calibrator prints its progress, and the quantizer logs advice to the root logger
    # (pre-processing with its own tool, which our exported graphs do not need).
    with contextlib.redirect_stdout(io.StringIO()), quiet_logs(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(
            str(fp32_path), str(out_path), reader, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types or QUANTIZED_OPS),
            nodes_to_exclude=list(exclude), per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # uint8 x int8 on an x86 CPU without VNNI (AVX2, AVX-512F) runs through
            # VPMADDUBSW, whose int16 pair sums saturate: 7-bit weights keep every pair in
            # range, on whatever CPU the graph later runs (the tiny encoder's W+ error, on
            # an AVX2 EPYC: 0.71 of its input-dependent part with 8-bit weights)
            reduce_range=not symmetric,
            calibrate_method={"entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile,
                              "max": CalibrationMethod.MinMax}[method],
            # TensorRT dequantizes int8 only: biases stay float for its target
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                           "QuantizeBias": not symmetric,
                           # one sample's activations at a time, folded into the running
                           # histograms (entropy) or ranges (max): memory no longer grows with
                           # the sample count (all at once, 16 ffhq-1024 samples took 21 GB)
                           "CalibStridedMinMax": 1})


def zero_points(model) -> dict[str, tuple[str, list[int]]]:
    """{Q/DQ node: (zero-point dtype, values)} of an ONNX model."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            tensor = inits.get(node.input[2])
            if tensor is not None:
                dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
                found[node.name] = (dtype, numpy_helper.to_array(tensor).ravel().tolist())
    return found


def check_symmetric_int8(model, source: str) -> None:
    """TensorRT's explicit quantization: every zero point int8 and 0."""
    points = zero_points(model)
    if not points:
        raise VrfamError(f"{source} holds no Q/DQ nodes with zero points")
    for node, (dtype, values) in points.items():
        if dtype != "int8" or any(values):
            raise VrfamError(f"{source}: node '{node}' quantizes to {dtype} with zero point "
                             f"{values[:3]}; TensorRT needs symmetric int8 (zero point 0)")


# Inputs that ONNX types as float32 whatever the graph computes in (op: input positions).
FLOAT32_ONLY_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}
QDQ_FP16_OPSET = 19            # the first opset whose QuantizeLinear takes float16 scales


def autocast_fp16(model):
    """The unquantized part of a Q/DQ graph in float16 (TensorRT-RTX has no FP32 matrix
    multiplies for Turing): float32 initializers, Constants and Casts become float16, so
    every DequantizeLinear yields float16; the graph's float32 inputs are cast once on
    entry and its outputs once on exit, keeping the float32 I/O contract. Inputs that
    ONNX types as float32 only (Resize scales) stay float32. Returns a new model.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = copy.deepcopy(model)
    graph = model.graph
    keep = {node.input[i] for node in graph.node
            for i in FLOAT32_ONLY_INPUTS.get(node.op_type, ()) if i < len(node.input)}

    def half(tensor):
        array = numpy_helper.to_array(tensor).astype(np.float32)
        return numpy_helper.from_array(np.clip(array, -65504, 65504).astype(np.float16),
                                       tensor.name)

    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT and tensor.name not in keep:
            graph.initializer[i].CopyFrom(half(tensor))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT \
                    and not set(node.output) & keep:
                attr.t.CopyFrom(half(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    casts_in, casts_out = [], []
    for values, entering in ((graph.input, True), (graph.output, False)):
        for value in values:
            if value.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            inner = f"{value.name}_fp16"
            for node in graph.node:
                names = node.input if entering else node.output
                names[:] = [inner if name == value.name else name for name in names]
            if entering:
                casts_in.append(helper.make_node("Cast", [value.name], [inner],
                                                 to=TensorProto.FLOAT16, name=f"{inner}_cast"))
            else:
                casts_out.append(helper.make_node("Cast", [inner], [value.name],
                                                  to=TensorProto.FLOAT, name=f"{inner}_cast"))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, QDQ_FP16_OPSET)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)
