"""Lowering a bundle to the ONNX files of the contract (vrfam_rt.contract).

One `<stage>.onnx` per stage with the contract's I/O names and shapes. Graph I/O is float32 in every precision; the precision lives inside the graph (an
FP16 graph casts its inputs once and computes in float16). B is dynamic in
[1, max_batch]. The generator is exported in its non-fused, constant-noise form.
"""
from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vrfam_rt import manifests
from vrfam_rt.bundle import Bundle
from vrfam_rt.contract import STAGE_NAMES, STAGES, example_inputs
from vrfam_rt.environment import quiet_logs
from vrfam_rt.errors import MissingDependency, VrfamError, argument
from vrfam_rt.fileio import check_replaceable, sha256_file, staged_dir, writable_folder
from vrfam_rt.version import __version__

COMPONENTS = STAGE_NAMES
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
DEFAULT_OPSET = 18
EXTERNAL_DATA_BYTES = 2_000_000_000  # weights past this go to a .data file (protobuf: 2 GiB)


def graph_form(component: str, precision: str) -> dict:
    """The call arguments of a stage in its exported form: the generator non-fused
    (constant weights, what ONNX and TensorRT want) in its precision's form
    (models.stylegan2.PRECISION_FORMS: for FP16, clamped), as the eager backend runs it."""
    from vrfam_rt.models.stylegan2 import PRECISION_FORMS

    if component != "generator":
        return {}
    return {"fused": False, **PRECISION_FORMS[precision]}


class InForm(nn.Module):
    """A network called with fixed keyword arguments (its form); shares its weights."""

    def __init__(self, module: nn.Module, form: dict):
        super().__init__()
        self.module, self.form = module, dict(form)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.module(*inputs, **self.form)


class StageGraph(nn.Module):
    """A network with the contract's float32 I/O around a compute dtype: the float32
    network itself, or a converted copy for another dtype (the bundle's stays float32)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        is_float32 = all(p.dtype == torch.float32 for p in module.parameters())
        self.module = module if dtype == torch.float32 and is_float32 else \
            copy.deepcopy(module).to(dtype)
        self.dtype = dtype

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.module(*(x.to(self.dtype) for x in inputs)).float()


def policy_module(bundle: Bundle, component: str, precision: str) -> nn.Module:
    """A bundle network in the form its `precision` graph takes (float32, shared weights)."""
    return InForm(bundle.component(component), graph_form(component, precision)).eval()


def stage_module(bundle: Bundle, component: str, precision: str) -> StageGraph:
    """The graph to export: the policy module computing in the precision's dtype."""
    return StageGraph(policy_module(bundle, component, precision), PRECISIONS[precision]).eval()


def export_component(bundle: Bundle, component: str, precision: str, path: Path,
                     opset: int = DEFAULT_OPSET, max_batch: int = 16) -> dict:
    """Write one ONNX file; returns its manifest entry (I/O, size, hash, FP32 nodes)."""
    import onnx
    import onnxscript.optimizer

    start = time.perf_counter()
    stage = STAGES[component]
    graph = stage_module(bundle, component, precision)
    inputs = example_inputs(bundle, component)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with warnings.catch_warnings(), torch.no_grad(), quiet_logs("torch.onnx"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, inputs, input_names=list(stage.inputs), output_names=list(stage.outputs),
            dynamic_shapes=(tuple({0: batch} for _ in inputs),), opset_version=opset,
            dynamo=True, optimize=True, verbose=False)
    # The exporter folds only small constants; fold the scaled and normalised weights
    # too, so that every convolution reads an initializer (what TensorRT's parser wants).
    onnxscript.optimizer.optimize(program.model, input_size_limit=1 << 31,
                                  output_size_limit=1 << 31)
    weight_bytes = sum(p.numel() * p.element_size() for p in graph.state_dict().values())
    external = weight_bytes > EXTERNAL_DATA_BYTES
    program.save(str(path), external_data=external)
    model = onnx.load(str(path), load_external_data=False)
    files = [path.name] + ([f"{path.name}.data"] if external else [])
    return {
        "file": path.name,
        "external_data": files[1:],
        "sha256": {f: sha256_file(path.parent / f) for f in files},
        "bytes": sum((path.parent / f).stat().st_size for f in files),
        "inputs": [_io(v) for v in model.graph.input],
        "outputs": [_io(v) for v in model.graph.output],
        "fp32_nodes": fp32_nodes(model) if precision == "fp16" else [],
        "export_seconds": round(time.perf_counter() - start, 1),
    }


def _io(value) -> dict:
    import onnx

    t = value.type.tensor_type
    shape = [d.dim_param or d.dim_value for d in t.shape.dim]
    return {"name": value.name, "shape": shape,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}


def fp32_nodes(model) -> list[dict]:
    """Nodes of an FP16 graph that still compute in float32, each with its reason."""
    import onnx

    outputs = {v.name for v in model.graph.output}
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(model.graph.value_info) + list(model.graph.output)}
    kept = []
    for node in model.graph.node:
        if not any(types.get(o) == onnx.TensorProto.FLOAT for o in node.output):
            continue
        scope = {p.key: p.value for p in node.metadata_props}.get(
            "pkg.torch.onnx.class_hierarchy", "")
        if outputs.intersection(node.output):
            reason = "graph output: the contract's I/O is float32"
        elif "ToRGB" in scope:
            reason = "RGB skip path: the image is accumulated in float32"
        elif "ModulatedConv2d" in scope:
            reason = "style max-normalisation: half reductions run in float32 ([B,C] only)"
        else:
            reason = "kept by the exporter"
        kept.append({"node": node.name, "op": node.op_type, "reason": reason})
    return kept


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"vrfam-rt": __version__}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return versions


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(f"export needs {exc.name}: pip install onnx onnxscript "
                                "onnxruntime") from None


def check_export(bundle: Bundle, out: Path, precisions, components, max_batch: int,
                 force: bool) -> None:
    """Refuse an export before any work: unknown names, a missing network, existing output."""
    require_onnx()
    out = Path(out)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise VrfamError(f"unknown precision {unknown[0]!r}; choose from {sorted(PRECISIONS)}")
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise VrfamError(f"unknown component {unknown[0]!r}; choose from {list(COMPONENTS)}")
    if max_batch < 1:
        raise VrfamError(f"{argument('max_batch', max_batch)}: the largest batch must be at "
                         "least 1")
    writable_folder(out)
    for precision in precisions:
        check_replaceable(out / precision, "export", force)
    for component in components:
        bundle.component(component)            # raises, naming how to get a missing one


def export_bundle(bundle: Bundle, out: Path, precisions=("fp32",), components=COMPONENTS,
                  opset: int = DEFAULT_OPSET, max_batch: int = 16, force: bool = False,
                  progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Write `out/<precision>/` for each precision: the ONNX files and manifest.json.

    Each precision folder appears whole or not at all; `force` replaces one this
    function wrote before (and nothing else). Returns {precision: manifest}.
    """
    from vrfam_rt.export.compat import check_trt_compatible

    check_export(bundle, out, precisions, components, max_batch, force)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for precision in precisions:
        with staged_dir(out / precision, "export", "vrfam-rt export", force) as tmp:
            files = {}
            for component in components:
                if progress:
                    progress(f"{precision}/{component}")
                entry = export_component(bundle, component, precision,
                                         tmp / f"{component}.onnx", opset, max_batch)
                check_trt_compatible(tmp / entry["file"], str(out / precision / entry["file"]))
                files[component] = entry
            manifest = manifests.write(tmp, "export", {
                "bundle_digest": bundle.digest,
                "bundle": str(bundle.path) if bundle.path else None,
                "config": bundle.config.to_dict(),
                "precision": precision, "opset": opset, "max_batch": max_batch,
                "io_dtype": "float32",
                "versions": library_versions(),
                "attributes": list(bundle.attributes),
                "files": files,
            })
        written[precision] = manifest
    return written
