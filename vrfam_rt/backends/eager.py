"""The eager PyTorch backend: the bundle's own networks, CPU or CUDA."""
from __future__ import annotations

import copy
import functools
import time
from collections import defaultdict

import torch

from vrfam_rt.backends import registry
from vrfam_rt.backends.base import Backend
from vrfam_rt.contract import STAGES, shapes
from vrfam_rt.errors import MissingDependency, UsageError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BLOCK_LISTS = {"style", "convs", "to_rgbs", "body", "styles", "transforms", "fcs"}
BLOCKS = {"input", "conv1", "to_rgb1", "input_layer", "latlayer1", "latlayer2"}


def blocks(module: torch.nn.Module):
    """(name, module) of the layers a profile reports: members of the block lists
    (`convs.3`, `encoder.body.7`, ...) and the single blocks beside them."""
    for name, layer in module.named_modules():
        parts = name.removeprefix("encoder.").split(".")
        if (len(parts) == 2 and parts[0] in BLOCK_LISTS) or (len(parts) == 1 and parts[0] in BLOCKS):
            yield name, layer


class EagerBackend(Backend):
    name = "eager"

    def __init__(self, bundle, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool | None = None, cuda_graphs: bool = False,
                 generator_form: dict | None = None):
        """`channels_last` defaults to on for the CPU (oneDNN's convolutions then skip
        their layout reorders) and off for CUDA (slower there, see the H200 gpu-check).
        `generator_form`: the generator's call arguments (models.stylegan2.Generator:
        fused, folded, conv_clamp); by default folded on the CPU, where its 1024^2
        layers are bound by memory traffic, and the plain non-fused form elsewhere, in the
        precision's form the exported graphs share (PRECISION_FORMS: fp16 unfolded and
        clamped)."""
        registry.resolve(self.name, precision, str(device))   # one it runs, or the UsageError
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise MissingDependency(f"device {device!r} asked for, but torch sees no CUDA device")
        self.bundle, self.device, self.precision = bundle, torch.device(device), precision
        self.dtype = DTYPES[precision]
        if cuda_graphs and self.device.type != "cuda":
            raise MissingDependency("CUDA graphs need a CUDA device")
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        self.channels_last, self.cuda_graphs = channels_last, cuda_graphs
        self._graphs: dict[tuple, tuple] = {}
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True    # shapes are fixed per batch size
        self.attributes = tuple(bundle.attributes)
        from vrfam_rt.models.stylegan2 import PRECISION_FORMS

        self.generator_form = {"folded": self.device.type == "cpu", **PRECISION_FORMS[precision]} \
            if generator_form is None else dict(generator_form)
        self._modules: dict[str, torch.nn.Module] = {}

    @classmethod
    def open(cls, *, bundle, precision, device, folders, threads, cuda_graphs) -> "EagerBackend":
        if bundle is None:
            raise UsageError("the eager backend runs a bundle's own networks (`bundle=`)")
        return cls(bundle, device=device, precision=precision or "fp32", cuda_graphs=cuda_graphs)

    def _module(self, stage: str) -> torch.nn.Module:
        """The stage's network on this device, dtype and layout. The bundle's own module
        runs where its weights can stay as they are; another dtype, device or layout
        takes a converted copy, so other users of the bundle see it as it was."""
        if stage not in self._modules:
            module = self.bundle.component(stage)
            if self.dtype != torch.float32 or self.device.type != "cpu" or self.channels_last:
                module = copy.deepcopy(module).to(self.device, self.dtype)
            if self.channels_last:                    # 4-D weights only (modconv's are 5-D)
                for tensor in [*module.parameters(), *module.buffers()]:
                    if tensor.dim() == 4:
                        tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
            self._modules[stage] = module.eval()
        return self._modules[stage]

    def stage_inputs(self, stage: str) -> dict[str, tuple]:
        """{input name: shape} of a stage as the bundle's config gives it (None: the batch)."""
        contract = shapes(self.bundle.config, len(self.attributes), batch=None)[stage]
        return {name: contract[name] for name in STAGES[stage].inputs}

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        module = self._module(stage)
        if stage == "generator" and self.generator_form:
            module = functools.partial(module, **self.generator_form)
        inputs = [x.to(self.device, self.dtype) for x in inputs]
        if self.channels_last:
            inputs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                      for x in inputs]
        with torch.inference_mode():
            if self.cuda_graphs:
                return self._replay(stage, module, inputs)
            return module(*inputs).float().contiguous()

    def layer_times(self, inputs: dict[str, tuple[torch.Tensor, ...]]) -> list[dict]:
        """Wall time of each layer (the modules two levels under a stage, e.g. `convs.3`
        or `encoder.body.7`) from forward hooks, of the second of two runs; CUDA is
        synchronised around each layer."""
        timings: dict[tuple[str, str], float] = defaultdict(float)
        cuda = self.device.type == "cuda"
        starts: dict[tuple[str, str], float] = {}

        def clock():
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        hooks = []
        for stage in inputs:
            for name, layer in blocks(self._module(stage)):
                key = (stage, name)
                hooks += [layer.register_forward_pre_hook(
                              lambda mod, args, key=key: starts.__setitem__(key, clock())),
                          layer.register_forward_hook(
                              lambda mod, args, out, key=key: timings.__setitem__(
                                  key, timings[key] + (clock() - starts[key]) * 1e3))]
        try:
            for _ in range(2):                       # a warm-up, then the timed run
                timings.clear()
                for stage, stage_inputs in inputs.items():
                    self.run(stage, *stage_inputs)
        finally:
            for hook in hooks:
                hook.remove()
        return [{"stage": s, "layer": n, "ms": ms} for (s, n), ms in timings.items()]

    def _replay(self, stage: str, module, inputs: list[torch.Tensor]):
        """Run a stage as a CUDA graph captured once per input shape: at batch 1 the
        stages are bound by kernel launches, which a replay issues all at once."""
        key = (stage, *(tuple(x.shape) for x in inputs))
        if key not in self._graphs:
            static = [x.clone() for x in inputs]
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):              # warm-up: cuDNN tuning, allocations
                for _ in range(2):
                    module(*static)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = module(*static).float()
            self._graphs[key] = (graph, static, output)
        graph, static, output = self._graphs[key]
        for target, x in zip(static, inputs):
            target.copy_(x)
        graph.replay()
        return output.clone()
