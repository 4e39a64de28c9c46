"""The ONNX Runtime backend: runs the files of one export precision folder.

CPU provider here; the CUDA provider where onnxruntime-gpu is installed, in which
case inputs and outputs stay on the GPU through I/O binding.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from vrfam_rt.backends.base import Backend
from vrfam_rt.errors import MissingDependency


class OrtBackend(Backend):
    name = "ort"

    def __init__(self, folder: str | Path, device: str = "cpu", threads: int | None = None,
                 fallback: str | Path | None = None):
        """`fallback`: another precision folder serving the stages `folder` lacks
        (an INT8 folder holds only the calibrated encoder/generator)."""
        try:
            import onnxruntime
        except ImportError:
            raise MissingDependency("the ort backend needs onnxruntime: pip install onnxruntime"
                                    ) from None
        self.ort = onnxruntime
        self._read_folder(folder, "export")
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise MissingDependency("ONNX Runtime here has no CUDA provider: pip install "
                                        "onnxruntime-gpu")
            self.providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0})]
        else:
            self.providers = ["CPUExecutionProvider"]
        self.threads = threads
        self.fallback = OrtBackend(fallback, device, threads) if fallback else None
        self._sessions: dict = {}

    @classmethod
    def open(cls, *, bundle, precision, device, folders, threads, cuda_graphs) -> "OrtBackend":
        return cls(cls.needed(folders, "graphs", "an export folder (vrfam-rt export --out DIR)"),
                   device, threads, fallback=folders.get("fallback"))

    def session(self, stage: str):
        if stage not in self._sessions:
            entry = self._entry(stage, f"export it with `vrfam-rt export --components {stage}`")
            options = self.ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
            options.log_severity_level = 3
            # idle ONNX Runtime threads would otherwise spin and slow whatever runs next
            # (torch stages of a mixed pipeline, or the other configurations of a bench)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if self.manifest.get("high_precision_dtype") == "float16":
                # ONNX Runtime's CPU graph rewrites miscompute float16 Q/DQ graphs (the tiny
                # encoder: W+ off by 4.2%, against 0.08% run as written); run them as written
                options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self._sessions[stage] = self.ort.InferenceSession(
                str(self.folder / entry["file"]), options, providers=self.providers)
        return self._sessions[stage]

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        if self.fallback and stage not in self.manifest["files"]:
            return self.fallback.run(stage, *inputs)
        session = self.session(stage)
        names = [i.name for i in session.get_inputs()]
        if self.device.type == "cuda":
            return self._run_bound(session, stage, names, inputs)
        feeds = {n: x.detach().float().cpu().contiguous().numpy() for n, x in zip(names, inputs)}
        return torch.from_numpy(session.run(None, feeds)[0])

    def _run_bound(self, session, stage, names, inputs) -> torch.Tensor:
        """CUDA provider: bind torch tensors in place; no host copies."""
        index = self.device.index or 0
        binding = session.io_binding()
        inputs = [x.to(self.device, torch.float32).contiguous() for x in inputs]
        for name, x in zip(names, inputs):
            binding.bind_input(name, "cuda", index, np.float32, list(x.shape), x.data_ptr())
        spec = self.manifest["files"][stage]["outputs"][0]
        shape = [inputs[0].shape[0] if isinstance(d, str) else d for d in spec["shape"]]
        out = torch.empty(shape, device=self.device, dtype=torch.float32)
        binding.bind_output(spec["name"], "cuda", index, np.float32, shape, out.data_ptr())
        session.run_with_iobinding(binding)
        return out

    def layer_times(self, inputs: dict[str, tuple[torch.Tensor, ...]]) -> list[dict]:
        """Time per ONNX node (ms) from ONNX Runtime's profiler, by stage and node; the
        stages a fallback folder runs are timed there."""
        rows = []
        for stage, stage_inputs in inputs.items():
            if stage not in self.manifest["files"]:
                rows += self.fallback.layer_times({stage: stage_inputs}) if self.fallback else []
                continue
            options = self.ort.SessionOptions()
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="vrfam-ort-")) / stage)
            options.log_severity_level = 3
            if self.threads:
                options.intra_op_num_threads = self.threads
            path = self.folder / self.manifest["files"][stage]["file"]
            session = self.ort.InferenceSession(str(path), options, providers=self.providers)
            feeds = {i.name: x.float().cpu().numpy()
                     for i, x in zip(session.get_inputs(), stage_inputs)}
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
