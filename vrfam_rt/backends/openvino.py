"""The OpenVINO backend: the exported ONNX graphs compiled by OpenVINO for the CPU.

One export folder (fp32, or the `int8-openvino` Q/DQ graphs of `vrfam-rt calibrate`) and
an inference precision:
- `fp32`: every op in float32;
- `bf16`: OpenVINO's bf16 inference-precision hint (AMX / AVX-512 BF16 kernels); on a
  CPU without bf16 hardware it runs float32 and says so in `note`;
- `int8`: the Q/DQ graphs, their quantized convolutions and matrix multiplies in int8
  (VNNI / AMX), the rest in bf16 where the CPU has it (as TensorRT keeps the rest of an
  INT8 plan in fp16), else float32.

A stage is compiled for the batch size it is called with (static shapes let OpenVINO
pick its fastest kernels); the last KEPT_SHAPES batch sizes per stage stay compiled
(each compiled model holds its own copy of the weights: 1 GiB for the ffhq-1024
encoder), so a server that pads its batches to a few sizes never recompiles; with
`cache_dir` the compiled blobs are also written there (OpenVINO's CACHE_DIR), so a
recompile, or the next process, loads instead of compiling.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vrfam_rt import manifests
from vrfam_rt.backends import registry
from vrfam_rt.backends.base import Backend
from vrfam_rt.errors import MissingDependency, VrfamError

KEPT_SHAPES = 4          # compiled batch sizes kept per stage (least recently used go)
OPENVINO_HINT = "pip install openvino"


def import_openvino():
    """The openvino module, or MissingDependency naming what to install."""
    try:
        import openvino
    except ImportError:
        raise MissingDependency(f"the openvino backend needs OpenVINO: {OPENVINO_HINT}") from None
    return openvino


def has_bf16(core) -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX) and OpenVINO's
    CPU plugin runs bf16 kernels here: the flags, the plugin's capabilities, and a
    one-matmul model compiled with the bf16 hint, which fails where oneDNN's kernels are
    capped below bf16 (ONEDNN_MAX_CPU_ISA=AVX2 on an AMX CPU)."""
    from vrfam_rt.environment import cpu_model

    if not set(cpu_model()["flags"]) & {"avx512_bf16", "amx_bf16"}:
        return False
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return False
    return _compiles_in_bf16(core)


def _compiles_in_bf16(core) -> bool:
    ov = import_openvino()
    from openvino import opset13 as ops

    x = ops.parameter([1, 32], np.float32)
    y = ops.matmul(x, ops.constant(np.ones((32, 32), np.float32)), False, False)
    try:
        core.compile_model(ov.Model([y], [x]), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    except RuntimeError:
        return False
    return True


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, folder: str | Path, precision: str = "fp32", threads: int | None = None,
                 cache_dir: str | Path | None = None, fallback: str | Path | None = None):
        """`folder`: an export precision folder (fp32, or int8-openvino or int8-cpu for
        `int8`);
        `fallback`: the fp32 folder serving the stages an INT8 folder lacks."""
        ov = import_openvino()
        registry.resolve(self.name, precision, "cpu")      # one it runs, or the UsageError
        self._read_folder(folder, "export")
        held = self.manifest["precision"]
        if (held == "int8") != (precision == "int8"):
            raise VrfamError(f"{self.folder} holds {held} graphs; the openvino backend runs "
                             f"{precision} from " + ("int8-openvino graphs (`vrfam-rt "
                                                     "calibrate --target openvino`)"
                                                     if precision == "int8" else "fp32 graphs"))
        if held == "int8" and self.manifest.get("target") not in self.spec.int8_targets:
            raise VrfamError(f"{self.folder} holds INT8 graphs for {self.manifest.get('target')}; "
                             "OpenVINO runs those of `vrfam-rt calibrate --target openvino` "
                             "(or `vrfam-rt calibrate --target cpu`)")
        if held not in ("fp32", "int8"):
            raise VrfamError(f"{self.folder} holds {held} graphs; OpenVINO compiles the fp32 "
                             "export (its bf16 comes from the inference-precision hint)")
        self.core = ov.Core()
        self.note = None
        # the widest float the rest runs in: fp32 asks for none, so probes nothing
        wide = "f32" if precision == "fp32" else "bf16" if has_bf16(self.core) else "f32"
        if precision == "bf16" and wide == "f32":
            self.note = "this CPU has no bf16 hardware (AVX-512 BF16 or AMX): OpenVINO runs fp32"
            precision = "fp32"
        self.precision = precision
        self.hint = "f32" if precision == "fp32" else wide
        self.device = torch.device("cpu")
        self.threads = threads
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.fallback = (OpenVinoBackend(fallback, "bf16" if self.hint == "bf16" else "fp32",
                                         threads, cache_dir) if fallback else None)
        self._compiled: dict = {}      # stage -> {input shapes: infer request}, oldest use first

    @classmethod
    def open(cls, *, bundle, precision, device, folders, threads, cuda_graphs) -> "OpenVinoBackend":
        """`precision=None`: int8 for INT8 graphs, else fp32."""
        graphs = cls.needed(folders, "graphs", "an export folder (vrfam-rt export --out DIR)")
        if precision is None:
            precision = "int8" if manifests.read(graphs, "export")["precision"] == "int8" \
                else "fp32"
        return cls(graphs, precision, threads, folders.get("compiled"), folders.get("fallback"))

    def properties(self) -> dict:
        """The compile properties: precision hint, latency mode, threads, cache."""
        props = {"INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            props["INFERENCE_NUM_THREADS"] = self.threads
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            props["CACHE_DIR"] = str(self.cache_dir)
        return props

    def compiled(self, stage: str, shapes: tuple[tuple[int, ...], ...]):
        """The infer request of the stage compiled for these input shapes (the
        KEPT_SHAPES most recently used shapes per stage stay compiled)."""
        held = self._compiled.setdefault(stage, {})
        request = held.pop(shapes, None)
        if request is None:
            while len(held) >= KEPT_SHAPES:
                held.pop(next(iter(held)))                  # the least recently used
            request = self.compile_stage(stage, shapes, self.properties()).create_infer_request()
        held[shapes] = request                              # now the most recent
        return request

    def compile_stage(self, stage: str, shapes, properties: dict):
        """The stage's graph compiled for these input shapes with these properties."""
        entry = self._entry(stage, f"export it with `vrfam-rt export --components {stage}`")
        model = self.core.read_model(str(self.folder / entry["file"]))
        model.reshape({port.get_any_name(): list(shape)
                       for port, shape in zip(model.inputs, shapes)})
        return self.core.compile_model(model, "CPU", properties)

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        if self.fallback and stage not in self.manifest["files"]:
            return self.fallback.run(stage, *inputs)
        arrays = [x.detach().float().cpu().contiguous().numpy() for x in inputs]
        request = self.compiled(stage, tuple(a.shape for a in arrays))
        request.infer(arrays)
        # the request's output buffer is reused by its next call: copy it out
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))

    def layer_times(self, inputs: dict[str, tuple[torch.Tensor, ...]]) -> list[dict]:
        """Time per compiled node (ms) from OpenVINO's performance counters, by stage and
        node, with the kernel it ran (e.g. brgconv_avx512_amx_I8)."""
        rows = []
        for stage, stage_inputs in inputs.items():
            owner = self if stage in self.manifest["files"] else self.fallback
            if owner is None:
                continue
            arrays = [x.float().contiguous().numpy() for x in stage_inputs]
            props = owner.properties() | {"PERF_COUNT": True}
            props.pop("CACHE_DIR", None)
            request = owner.compile_stage(stage, [a.shape for a in arrays], props) \
                .create_infer_request()
            request.infer(arrays)
            for info in request.profiling_info:
                ms = info.real_time.total_seconds() * 1e3
                if ms > 0:
                    rows.append({"stage": stage, "layer": f"{info.node_name} ({info.node_type}, "
                                 f"{info.exec_type})", "ms": ms})
        return rows
