"""Building TensorRT-RTX plans ahead of time, on a machine with or without a GPU.

TensorRT-RTX (`tensorrt_rtx`, pip `tensorrt-rtx-cu12`) compiles a strongly typed
network for a list of compute capabilities; kernels are finished by its JIT on the
user's GPU at first load. Without a GPU it builds in CPU-only mode: nothing is timed,
so there is no timing cache. Turing (SM75) has no FP32 matrix-multiply kernels in
TensorRT-RTX: a graph built for 7.5 must be FP16 outside its Q/DQ nodes.
"""
from __future__ import annotations

import re
from pathlib import Path

from vrfam_rt.environment import import_tensorrt_rtx, quiet_logger
from vrfam_rt.errors import VrfamError

# The compute capabilities TensorRT-RTX 1.7 builds for (its ComputeCapability enum).
COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
# Default targets: Turing (the RTX 2080 Ti) and every Ampere-and-later RTX part.
DEFAULT_TARGETS = COMPUTE_CAPABILITIES
def check_targets(targets) -> tuple[str, ...]:
    """Sorted, unique compute capabilities, each one TensorRT-RTX builds for."""
    bad = [t for t in targets if t not in COMPUTE_CAPABILITIES]
    if bad:
        raise VrfamError(f"compute capability {bad[0]}: TensorRT-RTX builds for "
                         f"{', '.join(COMPUTE_CAPABILITIES)}")
    if not targets:
        raise VrfamError("give at least one compute capability")
    return tuple(sorted(set(targets), key=lambda t: tuple(map(int, t.split(".")))))


def build_plan_rtx(onnx_path: Path, profile: dict, options, targets: tuple[str, ...]) -> bytes:
    """Serialized TensorRT-RTX engine of one ONNX file for the compute capabilities
    `targets`, with the batch profile `profile` ({input: {min, opt, max}})."""
    trt = import_tensorrt_rtx()
    log = quiet_logger(trt)
    builder = trt.Builder(log)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise VrfamError(f"TensorRT-RTX could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                 int(options.workspace_gib * 2**30))
    config.builder_optimization_level = options.opt_level
    if options.refittable:
        config.set_flag(trt.BuilderFlag.REFIT)
    config.num_compute_capabilities = len(targets)
    for i, target in enumerate(targets):
        config.set_compute_capability(getattr(trt.ComputeCapability,
                                              "SM" + target.replace(".", "")), i)
    trt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        trt_profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(trt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        reason = log.errors[-1] if log.errors else "no message"
        needed = re.search(r"OutOfMemory \(Requested size was (\d+) bytes", reason)
        if needed:
            raise VrfamError(f"TensorRT-RTX could not build {onnx_path}: it ran out of its "
                             f"{options.workspace_gib:g} GiB of scratch memory (it asked for "
                             f"{int(needed.group(1)) / 2**30:.2f} GiB); raise "
                             f"`workspace_gib={options.workspace_gib:g}` or lower the max batch")
        raise VrfamError(f"TensorRT-RTX could not build {onnx_path} for sm "
                         f"{', '.join(targets)}: {reason}")
    return bytes(plan)
