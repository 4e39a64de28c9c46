"""The TensorRT backend: loads the plans of `vrfam-rt build-engines` and runs them.

I/O are PyTorch CUDA tensors bound by name (`set_tensor_address`); every stage is
enqueued with `execute_async_v3` on the current torch stream, so a pipeline stays
on the device with no host copies. Optionally the three stages are captured in a
CUDA graph per batch size and replayed.
"""
from __future__ import annotations

from pathlib import Path

import torch

from vrfam_rt.backends import Backend
from vrfam_rt.engines.build import detect_target, import_tensorrt
from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import sha256_file


class TrtBackend(Backend):
    name = "trt"

    def __init__(self, folder: str | Path, device: str = "cuda"):
        self.trt = import_tensorrt()
        self._read_folder(folder, "build plans with `vrfam-rt build-engines`")
        self.device = torch.device(device)
        self.target = detect_target()
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self._engines: dict = {}
        self._graphs: dict = {}

    def _context(self, stage: str):
        if stage not in self._engines:
            entry = self._entry(stage, "build it with `vrfam-rt build-engines`")
            built = entry["target"]
            here = {"tensorrt": self.target.tensorrt, "gpu": self.target.gpu,
                    "compute_capability": self.target.compute_capability}
            if built != here:
                raise VrfamError(f"{self.folder / entry['plan']} was built for {built['gpu']} "
                                 f"(sm {built['compute_capability']}) with TensorRT "
                                 f"{built['tensorrt']}; this is {here['gpu']} with TensorRT "
                                 f"{here['tensorrt']}: rebuild with `vrfam-rt build-engines`")
            plan = self.folder / entry["plan"]
            if sha256_file(plan) != entry["sha256"]:
                raise VrfamError(f"{plan} is corrupt (sha256 mismatch); rebuild with "
                                 "`vrfam-rt build-engines`")
            engine = self.runtime.deserialize_cuda_engine(plan.read_bytes())
            if engine is None:
                raise VrfamError(f"TensorRT could not load {plan}; rebuild it")
            self._engines[stage] = (engine, engine.create_execution_context(), entry)
        return self._engines[stage]

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        engine, context, entry = self._context(stage)
        inputs = [x.to(self.device, torch.float32).contiguous() for x in inputs]
        batch = inputs[0].shape[0]
        limit = entry["profile"][entry["inputs"][0]["name"]]["max"][0]
        if batch > limit:
            raise VrfamError(f"batch {batch} exceeds the plan's max batch {limit}; rebuild "
                             f"with --max-batch {batch}")
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
        # the output's memory belongs to torch's caching allocator on this stream
        return out

    def edit_graph(self, image: torch.Tensor, alphas: torch.Tensor):
        """image -> (W+, edited image) through the three plans, captured once per batch
        size in a CUDA graph and replayed; inputs are copied into static buffers."""
        batch = image.shape[0]
        if batch not in self._graphs:
            static_image = image.to(self.device).clone()
            static_alphas = alphas.to(self.device).clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):     # warm-up outside capture (allocations, tactics)
                self._edit(static_image, static_alphas)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self._edit(static_image, static_alphas)
            self._graphs[batch] = (graph, static_image, static_alphas, outputs)
        graph, static_image, static_alphas, outputs = self._graphs[batch]
        static_image.copy_(image)
        static_alphas.copy_(alphas)
        graph.replay()
        return outputs

    def _edit(self, image, alphas):
        wplus = self.encoder(image)
        return wplus, self.generator(self.transformer(wplus, alphas))
