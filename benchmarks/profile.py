"""Per-stage and per-layer time of one edit, and how far each stage is from the peak.

- eager: forward hooks time every layer (the modules two levels under a stage, e.g.
  `convs.3` or `encoder.body.7`); CUDA is synchronised around each layer;
- ort: ONNX Runtime's own profiler (node events of the session trace);
- trt: TensorRT's layer profiler (`IExecutionContext.profiler`).
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from vrfam_rt.bundle import Bundle
from vrfam_rt.contract import STAGE_NAMES, example_inputs

# Published dense peaks in GFLOP/s (FP32, and FP16 tensor cores with FP32 accumulation).
DEVICE_PEAKS = {
    "NVIDIA GeForce RTX 2080 Ti": {"fp32": 13_450, "fp16": 56_900},
    "NVIDIA H100 80GB HBM3": {"fp32": 66_900, "fp16": 989_000},
    "NVIDIA H200": {"fp32": 66_900, "fp16": 989_000},
}


def measure_cpu_peak(size: int = 2048, repeats: int = 5) -> float:
    """FP32 GFLOP/s of a large matmul on this CPU with torch's threads (best of `repeats`)."""
    from vrfam_rt.benchmarks.bench import best_gflops

    a, b = torch.randn(size, size), torch.randn(size, size)
    return best_gflops(lambda: a @ b, 2 * size**3, repeats)


def _stage_inputs(bundle: Bundle, batch: int):
    image = example_inputs(bundle, "encoder", batch)[0]
    alphas = torch.zeros(batch, len(bundle.attributes))
    alphas[:, 0] = 1.0
    return image, alphas


def eager_layers(bundle: Bundle, runner, batch: int = 1) -> list[dict]:
    """Wall time of each layer of an eager run (ms), by stage and layer name."""
    timings: dict[tuple[str, str], float] = defaultdict(float)
    cuda = runner.device.type == "cuda"
    hooks = []
    for stage in STAGE_NAMES:
        for name, layer in blocks(runner._module(stage)):
            def pre(mod, args, key=(stage, name)):
                if cuda:
                    torch.cuda.synchronize()
                mod._vrfam_start = time.perf_counter()

            def post(mod, args, out, key=(stage, name)):
                if cuda:
                    torch.cuda.synchronize()
                timings[key] += (time.perf_counter() - mod._vrfam_start) * 1e3
            hooks += [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
    image, alphas = _stage_inputs(bundle, batch)
    try:
        runner.edit(image, alphas)                         # warm-up
        timings.clear()
        runner.edit(image, alphas)
    finally:
        for h in hooks:
            h.remove()
    return [{"stage": s, "layer": n, "ms": ms} for (s, n), ms in timings.items()]


BLOCK_LISTS = {"style", "convs", "to_rgbs", "body", "styles", "transforms", "fcs"}
BLOCKS = {"input", "conv1", "to_rgb1", "input_layer", "latlayer1", "latlayer2"}


def blocks(module: torch.nn.Module):
    """(name, module) of the layers a profile reports: members of the block lists
    (`convs.3`, `encoder.body.7`, ...) and the single blocks beside them."""
    for name, layer in module.named_modules():
        parts = name.removeprefix("encoder.").split(".")
        if (len(parts) == 2 and parts[0] in BLOCK_LISTS) or (len(parts) == 1 and parts[0] in BLOCKS):
            yield name, layer


def ort_layers(bundle: Bundle, runner, batch: int = 1) -> list[dict]:
    """Time per ONNX node from ONNX Runtime's profiler (ms), by stage and node."""
    rows = []
    image, alphas = _stage_inputs(bundle, batch)
    inputs = {"encoder": (image,), "transformer": (runner.encoder(image), alphas),
              "generator": (runner.encoder(image),)}
    for stage in STAGE_NAMES:
        if stage not in runner.manifest["files"]:
            continue
        options = runner.ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="vrfam-ort-")) / stage)
        options.log_severity_level = 3
        if runner.threads:
            options.intra_op_num_threads = runner.threads
        path = runner.folder / runner.manifest["files"][stage]["file"]
        session = runner.ort.InferenceSession(str(path), options, providers=runner.providers)
        feeds = {i.name: x.float().numpy() for i, x in zip(session.get_inputs(), inputs[stage])}
        session.run(None, feeds)
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
        shutil.rmtree(trace.parent, ignore_errors=True)
        per_node: dict[str, float] = defaultdict(float)
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                op = e.get("args", {}).get("op_name", "?")
                per_node[f"{e['name'][:-len('_kernel_time')]} ({op})"] += e["dur"] / 1e3
        rows += [{"stage": stage, "layer": n, "ms": ms} for n, ms in per_node.items()]
    return rows


def openvino_layers(bundle: Bundle, runner, batch: int = 1) -> list[dict]:
    """Time per compiled node from OpenVINO's performance counters (ms), by stage and
    node, with the kernel it ran (e.g. brgconv_avx512_amx_I8)."""
    rows = []
    image, alphas = _stage_inputs(bundle, batch)
    inputs = {"encoder": (image,), "transformer": (runner.encoder(image), alphas),
              "generator": (runner.encoder(image),)}
    for stage in STAGE_NAMES:
        owner = runner if stage in runner.manifest["files"] else runner.fallback
        if owner is None:
            continue
        arrays = [x.float().contiguous().numpy() for x in inputs[stage]]
        props = owner.properties() | {"PERF_COUNT": True}
        props.pop("CACHE_DIR", None)
        compiled = owner.compile_stage(stage, [a.shape for a in arrays], props)
        request = compiled.create_infer_request()
        request.infer(arrays)
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1e3
            if ms > 0:
                rows.append({"stage": stage, "layer": f"{info.node_name} ({info.node_type}, "
                             f"{info.exec_type})", "ms": ms})
    return rows


def trt_layers(bundle: Bundle, runner, batch: int = 1) -> list[dict]:
    """Time per TensorRT layer from IProfiler (ms), by stage and layer."""
    trt = runner.trt
    rows: list[dict] = []

    class Collect(trt.IProfiler):
        def __init__(self, stage):
            super().__init__()
            self.stage = stage

        def report_layer_time(self, layer_name, ms):
            rows.append({"stage": self.stage, "layer": layer_name, "ms": ms})

    image, alphas = _stage_inputs(bundle, batch)
    image, alphas = image.cuda(), alphas.cuda()
    runner.edit(image, alphas)
    for stage in STAGE_NAMES:
        runner._context(stage)[1].profiler = Collect(stage)
    runner.edit(image, alphas)
    torch.cuda.synchronize()
    return rows


def top_layers(rows: list[dict], count: int = 10) -> list[dict]:
    """The `count` slowest layers of each stage with their share of the stage time."""
    out = []
    for stage in STAGE_NAMES:
        mine = sorted((r for r in rows if r["stage"] == stage), key=lambda r: -r["ms"])
        total = sum(r["ms"] for r in mine) or 1.0
        out += [r | {"share": r["ms"] / total} for r in mine[:count]]
    return out
