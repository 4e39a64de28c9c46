"""The TensorRT backend: loads the plans of `vrfam-rt build-engines` and runs them.

I/O are PyTorch CUDA tensors bound by name (`set_tensor_address`); every stage is
enqueued with `execute_async_v3` on the current torch stream, so a pipeline stays
on the device with no host copies. Plans of either flavour load: TensorRT (bound to
the GPU that built them) and TensorRT-RTX (built for a list of compute capabilities;
its header is checked before anything is deserialized, without needing a GPU).
"""
from __future__ import annotations

from pathlib import Path

import torch

from vrfam_rt.backends.base import Backend
from vrfam_rt.environment import import_tensorrt, import_tensorrt_rtx, quiet_logger
from vrfam_rt.errors import MissingDependency, VrfamError
from vrfam_rt.fileio import sha256_bytes, write_bytes_atomic
from vrfam_rt.manifests import Target


class TrtBackend(Backend):
    name = "trt"

    def __init__(self, folder: str | Path, device: str = "cuda"):
        self._read_folder(folder, "engines")
        self.flavour = self.manifest.get("flavour", "tensorrt")
        if self.flavour == "tensorrt":
            self.trt = import_tensorrt()
            self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        else:
            self.trt = import_tensorrt_rtx()
            self.logger = quiet_logger(self.trt)
        self.runtime = self.trt.Runtime(self.logger)
        self._plans = {stage: self._checked_plan(stage) for stage in self.manifest["files"]}
        if not torch.cuda.is_available():
            raise MissingDependency(f"the plans in {self.folder} are ready, but running them "
                                    "needs an NVIDIA GPU and torch sees none")
        self.device = torch.device(device)
        self._check_gpu()
        self._engines: dict = {}
        self._runtime_caches: dict = {}

    @classmethod
    def open(cls, *, bundle, precision, device, folders, threads, cuda_graphs) -> "TrtBackend":
        return cls(cls.needed(folders, "plans", "a plan folder (vrfam-rt build-engines --out DIR)"),
                   device)

    def _checked_plan(self, stage: str) -> bytes:
        """A stage's plan bytes, refused in one line when they are not what was built."""
        entry = self._entry(stage, "build it with `vrfam-rt build-engines`")
        plan = self.folder / entry["plan"]
        data = plan.read_bytes() if plan.is_file() else b""
        if sha256_bytes(data) != entry["sha256"]:
            raise VrfamError(f"{plan} is missing or corrupt (sha256 mismatch); rebuild with "
                             "`vrfam-rt build-engines`")
        if self.flavour == "rtx":         # the header check works without a GPU
            _, diagnostics = self.runtime.get_engine_validity(data)
            flags = self.trt.EngineInvalidityDiagnostics
            for flag, what in ((flags.MALFORMED_ENGINE, "is not a TensorRT-RTX plan"),
                               (flags.VERSION_MISMATCH, "was built by another TensorRT-RTX")):
                if diagnostics & int(flag):
                    raise VrfamError(f"{plan} {what}; rebuild with `vrfam-rt build-engines "
                                     "--flavour rtx`")
        return data

    def _check_gpu(self) -> None:
        """The local GPU is one the plans were built for."""
        props = torch.cuda.get_device_properties(self.device)
        here = f"{props.major}.{props.minor}"
        for stage, entry in self.manifest["files"].items():
            built = entry["target"]
            if self.flavour == "rtx":
                ok = here in built["compute_capabilities"] and \
                    built["version"] == self.trt.__version__
            else:
                ok = (built["version"], built["gpu"], built["compute_capabilities"]) == \
                    (self.trt.__version__, props.name, [here])
            if not ok:
                raise VrfamError(f"{self.folder / entry['plan']} was built for "
                                 f"{Target(**built).describe()}; this is {props.name} (sm "
                                 f"{here}) with {self.trt.__version__}: rebuild with "
                                 "`vrfam-rt build-engines`")

    def _context(self, stage: str):
        if stage not in self._engines:
            engine = self.runtime.deserialize_cuda_engine(self._plans.pop(stage))
            if engine is None:
                raise VrfamError(f"TensorRT could not load {self.folder / stage}.plan; rebuild it")
            entry = self.manifest["files"][stage]
            if self.flavour == "rtx":
                context = engine.create_execution_context(self._runtime_config(stage, engine))
            else:
                context = engine.create_execution_context()
            self._engines[stage] = (engine, context, entry)
        return self._engines[stage]

    def _runtime_config(self, stage: str, engine):
        """TensorRT-RTX: kernels JIT-compiled for this GPU persist in `<stage>.runtime-cache`
        beside the plan (a cache from another GPU or driver is ignored and rebuilt), and each
        plan replays as one CUDA graph."""
        config = engine.create_runtime_config()
        config.cuda_graph_strategy = self.trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        cache = config.create_runtime_cache()
        path = self.folder / f"{stage}.runtime-cache"
        if path.is_file():
            cache.deserialize(path.read_bytes())
        config.set_runtime_cache(cache)
        self._runtime_caches[stage] = (cache, path, set())
        return config

    def _save_runtime_cache(self, stage: str, batch: int) -> None:
        """After the first run of a stage at a batch size, when the JIT has compiled for it."""
        if stage not in self._runtime_caches:
            return
        cache, path, seen = self._runtime_caches[stage]
        if batch not in seen:
            seen.add(batch)
            write_bytes_atomic(path, bytes(cache.serialize()))

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        engine, context, entry = self._context(stage)
        inputs = [x.to(self.device, torch.float32).contiguous() for x in inputs]
        batch = inputs[0].shape[0]
        limit = entry["profile"][entry["inputs"][0]["name"]]["max"][0]
        if batch > limit:
            raise VrfamError(f"batch {batch} exceeds the plan's max batch {limit}; rebuild "
                             f"with `vrfam-rt build-engines --max-batch {batch}`")
        for spec, x in zip(entry["inputs"], inputs):
            context.set_input_shape(spec["name"], tuple(x.shape))
            context.set_tensor_address(spec["name"], x.data_ptr())
        spec = entry["outputs"][0]
        shape = [batch if isinstance(d, str) else d for d in spec["shape"]]
        out = torch.empty(shape, device=self.device, dtype=torch.float32)
        context.set_tensor_address(spec["name"], out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise VrfamError(f"TensorRT failed to run the {stage} plan")
        self._save_runtime_cache(stage, batch)
        # the output's memory belongs to torch's caching allocator on this stream
        return out

    def layer_times(self, inputs: dict[str, tuple[torch.Tensor, ...]]) -> list[dict]:
        """Time per TensorRT layer (ms) from IProfiler, by stage and layer, of the second
        of two runs of each stage."""
        rows: list[dict] = []

        class Collect(self.trt.IProfiler):
            def __init__(self, stage):
                super().__init__()
                self.stage = stage

            def report_layer_time(self, layer_name, ms):
                rows.append({"stage": self.stage, "layer": layer_name, "ms": ms})

        for stage, stage_inputs in inputs.items():
            self.run(stage, *stage_inputs)                 # warm-up
            self._context(stage)[1].profiler = Collect(stage)
            self.run(stage, *stage_inputs)
        torch.cuda.synchronize()
        return rows
