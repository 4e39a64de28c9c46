"""Roofline lower bounds of an edit on a GPU, from the ONNX graphs alone (nothing runs).

Per layer (ONNX node) and per stage: FLOPs (2 per multiply-add; one per output element
for element-wise work), bytes of weights, bytes of activations read and written when
every node runs on its own (no fusion), and the roofline bound

    bound = max(FLOPs / peak FLOP/s, bytes that must move / memory bandwidth)

where the bytes that must move are the weights (read at least once per call) and, for a
stage, its graph inputs and outputs; unfused activation traffic is listed beside it but
not counted, since fusion removes it. A bound, not a measurement: no kernel reaches the
peak, so real plans are slower. With a GPU, `vrfam-rt profile --backend trt` measures.
"""
from __future__ import annotations

import math
from pathlib import Path

# Published dense peaks: FP32 and FP16 tensor-core FLOP/s (FP32 accumulate), memory bytes/s.
GPUS = {
    "rtx-2080-ti": {"name": "NVIDIA GeForce RTX 2080 Ti", "fp32": 13.45e12, "fp16": 56.9e12,
                    "bandwidth": 616e9},
    "h100": {"name": "NVIDIA H100 SXM", "fp32": 66.9e12, "fp16": 989e12, "bandwidth": 3.35e12},
    "h200": {"name": "NVIDIA H200 SXM", "fp32": 66.9e12, "fp16": 989e12, "bandwidth": 4.8e12},
}
MATMUL_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FREE_OPS = ("Reshape", "Unsqueeze", "Squeeze", "Shape", "Constant", "Identity", "Flatten",
            "Transpose", "Concat", "Slice", "Gather", "Expand", "Cast", "QuantizeLinear",
            "DequantizeLinear")     # data movement (or folded by the builder): no FLOPs


def _dims(value, batch: int) -> list[int]:
    """Static dims of a value_info, the symbolic batch set to `batch`."""
    return [d.dim_value if d.HasField("dim_value") else batch
            for d in value.type.tensor_type.shape.dim]


def _itemsize(elem_type: int) -> int:
    from onnx import helper
    return helper.tensor_dtype_to_np_dtype(elem_type).itemsize


def node_flops(node, shapes: dict[str, list[int]]) -> int:
    """FLOPs of one node from its input and output shapes."""
    out = shapes.get(node.output[0])
    if out is None or node.op_type in FREE_OPS:
        return 0
    if node.op_type in ("Conv", "ConvTranspose"):
        x, w = shapes[node.input[0]], shapes[node.input[1]]
        if node.op_type == "Conv":                  # w [Cout, Cin/g, k, k]
            return 2 * math.prod(out) * math.prod(w[1:])
        return 2 * math.prod(x) * (w[1] * math.prod(w[2:]))   # w [Cin, Cout/g, k, k]
    if node.op_type in ("Gemm", "MatMul"):
        a = shapes[node.input[0]]
        k = a[-2] if node.op_type == "Gemm" and any(
            x.name == "transA" and x.i for x in node.attribute) else a[-1]
        return 2 * math.prod(out) * k
    return math.prod(out)


def analyse(onnx_path: Path, batch: int = 1) -> dict:
    """Per-node FLOPs and bytes of one ONNX file, and the stage totals."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes, sizes = {}, {}
    for v in [*graph.input, *graph.value_info, *graph.output]:
        shapes[v.name] = _dims(v, batch)
        sizes[v.name] = _itemsize(v.type.tensor_type.elem_type)
    weights = {}
    for t in graph.initializer:
        shapes[t.name] = list(t.dims)
        weights[t.name] = math.prod(t.dims) * _itemsize(t.data_type)
    layers = []
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        weight = sum(weights.get(i, 0) for i in node.input)
        act = sum(math.prod(shapes[n]) * sizes.get(n, 4) for n in [*node.input, *node.output]
                  if n in sizes and n not in weights)
        layers.append({"layer": node.name or node.output[0], "op": node.op_type,
                       "flops": node_flops(node, shapes), "weight_bytes": weight,
                       "activation_bytes": act})
    io = sum(math.prod(shapes[v.name]) * sizes[v.name] for v in [*graph.input, *graph.output])
    return {"layers": layers, "flops": sum(l["flops"] for l in layers),
            "weight_bytes": sum(weights.values()), "io_bytes": io,
            "activation_bytes": sum(l["activation_bytes"] for l in layers)}


def bound_ms(flops: float, must_move: float, gpu: dict, precision: str) -> float:
    peak = gpu["fp32" if precision == "fp32" else "fp16"]
    return 1e3 * max(flops / peak, must_move / gpu["bandwidth"])


def roofline(onnx_dir: Path, gpu_key: str, batch: int = 1) -> dict:
    """Stage and layer bounds of an export precision folder on one of GPUS."""
    import json

    gpu = GPUS[gpu_key]
    manifest = json.loads((Path(onnx_dir) / "manifest.json").read_text())
    precision = manifest["precision"]
    stages, layers = [], []
    for stage, entry in manifest["files"].items():
        result = analyse(Path(onnx_dir) / entry["file"], batch)
        must_move = result["weight_bytes"] + result["io_bytes"]
        stages.append({"stage": stage, "gflop": result["flops"] / 1e9,
                       "weight_mb": result["weight_bytes"] / 1e6,
                       "unfused_activation_mb": result["activation_bytes"] / 1e6,
                       "bound_ms": bound_ms(result["flops"], must_move, gpu, precision),
                       "bound_by": "compute" if result["flops"] / gpu[
                           "fp32" if precision == "fp32" else "fp16"] >= must_move / gpu[
                           "bandwidth"] else "memory"})
        for layer in result["layers"]:
            layers.append({"stage": stage, **layer,
                           "bound_ms": bound_ms(layer["flops"], layer["weight_bytes"], gpu,
                                                precision)})
    total = {"stage": "total", "gflop": sum(s["gflop"] for s in stages),
             "weight_mb": sum(s["weight_mb"] for s in stages),
             "unfused_activation_mb": sum(s["unfused_activation_mb"] for s in stages),
             "bound_ms": sum(s["bound_ms"] for s in stages), "bound_by": ""}
    return {"gpu": gpu["name"], "precision": precision, "batch": batch,
            "peaks": gpu, "stages": [*stages, total], "layers": layers,
            "note": "roofline lower bounds from the ONNX graphs, not measurements"}
