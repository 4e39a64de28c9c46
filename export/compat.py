"""Checks that an ONNX file is one TensorRT's parser builds, run by every export.

Each rule fails with a VrfamError naming the file and the node. The operator list is
the ONNX-TensorRT support matrix of TensorRT 10 (opsets 9-20); random and
training-only operators are refused too, since an exported graph must be a pure
function of its inputs.
"""
from __future__ import annotations

from pathlib import Path

from vrfam_rt.errors import VrfamError

TRT_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DeformConv DepthToSpace DequantizeLinear Div Einsum Elu Equal Erf Exp Expand EyeLike Flatten
Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity
If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual
Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape
Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu
Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
NOT_PURE = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                      "Bernoulli", "Multinomial", "Dropout"})
TRT_OPSETS = range(9, 21)
DTYPES = {"float32", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool"}
CONSTANT_WEIGHT_OPS = {"Conv", "ConvTranspose"}


def check_trt_compatible(path: Path, source: str | None = None) -> None:
    """Raise VrfamError on the first rule the ONNX file at `path` breaks."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    check_model(model, source or str(path))


def check_model(model, source: str) -> None:
    import onnx

    graph = model.graph
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version not in TRT_OPSETS:
            raise VrfamError(f"{source}: opset {opset.version} is outside TensorRT's "
                             f"{TRT_OPSETS.start}-{TRT_OPSETS.stop - 1}; export with "
                             "`vrfam-rt export --opset 18`")
    constants = {t.name for t in graph.initializer}
    dequantized = set()
    for node in graph.node:
        where = f"{source}: node '{node.name or node.output[0]}' ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            raise VrfamError(f"{where} is in custom domain {node.domain!r}; TensorRT needs a plugin")
        if node.op_type in NOT_PURE:
            raise VrfamError(f"{where} is random or training-only; export in eval mode with "
                             "constant noise")
        if node.op_type not in TRT_OPS:
            raise VrfamError(f"{where} is not supported by TensorRT's ONNX parser")
        if node.op_type == "Constant":
            constants.update(node.output)
        if node.op_type == "DequantizeLinear" and node.input[0] in constants:
            dequantized.update(node.output)
        if node.op_type in CONSTANT_WEIGHT_OPS:
            weight = node.input[1]
            if weight not in constants and weight not in dequantized:
                raise VrfamError(f"{where} reads weights '{weight}' computed at run time; "
                                 "TensorRT needs constant convolution weights")
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    for value in values:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name \
            if value.type.tensor_type.elem_type else "undefined"
        if dtype not in DTYPES:
            raise VrfamError(f"{source}: tensor '{value.name}' has dtype {dtype}, which "
                             "TensorRT does not take")
    for tensor in graph.initializer:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
        if dtype not in DTYPES:
            raise VrfamError(f"{source}: initializer '{tensor.name}' has dtype {dtype}, which "
                             "TensorRT does not take")
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            dynamic = bool(dim.dim_param) or dim.dim_value <= 0
            if dynamic != (axis == 0):
                what = "is dynamic" if dynamic else "is fixed"
                raise VrfamError(f"{source}: axis {axis} of '{value.name}' {what}; only the "
                                 "batch axis (0) may be dynamic")
