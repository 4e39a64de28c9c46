"""Building TensorRT plans from an export folder, with either flavour of TensorRT.

One plan per component, from a strongly typed network, so the precision comes from the
ONNX graph (TensorRT 11 has no precision flags; 10.x and TensorRT-RTX are driven the
same way). Each plan has a dynamic-batch optimization profile. Flavour `tensorrt`
builds on the local GPU through Polygraphy with a persistent timing cache; flavour
`rtx` (engines/rtx.py) builds ahead of time for a list of compute capabilities, with
or without a GPU. Plans are cached by `engines.cache`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from vrfam_rt import manifests
from vrfam_rt.engines.cache import cached_entry, engine_key, locked, store
from vrfam_rt.engines.profiles import batch_profile
from vrfam_rt.environment import TENSORRT_HINT, import_tensorrt, import_tensorrt_rtx
from vrfam_rt.errors import MissingDependency, VrfamError, argument
from vrfam_rt.fileio import sha256_bytes, sha256_file
from vrfam_rt.manifests import Target


@dataclass(frozen=True)
class BuildOptions:
    workspace_gib: float = 8.0     # WORKSPACE memory-pool limit (the 1024 px generator
                                   # at batch 8 takes 4.4 GB of scratch)
    opt_level: int = 3             # builder_optimization_level, 0-5
    refittable: bool = False       # REFIT: weights can be swapped without a rebuild

    def __post_init__(self):
        if not 0 <= self.opt_level <= 5:
            raise VrfamError(f"{argument('opt_level', self.opt_level)} is not in 0..5")
        if self.workspace_gib <= 0:
            raise VrfamError(f"{argument('workspace_gib', self.workspace_gib)}: the workspace "
                             "must be positive")


def detect_target() -> Target:
    """TensorRT version and GPU of this machine (needs TensorRT and CUDA)."""
    trt = import_tensorrt()
    import torch
    if not torch.cuda.is_available():
        raise MissingDependency(f"TensorRT needs an NVIDIA GPU and torch sees none; {TENSORRT_HINT}")
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return Target("tensorrt", trt.__version__, (f"{props.major}.{props.minor}",), props.name)


def rtx_target(compute_capabilities=None) -> Target:
    """A TensorRT-RTX target for these compute capabilities (default: Turing and every
    Ampere-and-later RTX part); needs TensorRT-RTX, no GPU."""
    from vrfam_rt.engines import rtx
    targets = rtx.check_targets(compute_capabilities or rtx.DEFAULT_TARGETS)
    return Target("rtx", import_tensorrt_rtx().__version__, targets)


def choose_target(flavour: str = "auto", compute_capabilities=()) -> Target:
    """The target of a build's `flavour`: auto takes TensorRT when it and an NVIDIA GPU
    are present (and no compute capability is given), else TensorRT-RTX."""
    if flavour == "tensorrt":
        if compute_capabilities:
            raise VrfamError("compute capabilities choose TensorRT-RTX targets; TensorRT "
                             "builds for the local GPU (use `flavour='rtx'`)")
        return detect_target()
    if flavour == "auto" and not compute_capabilities:
        try:
            return detect_target()
        except MissingDependency:
            pass
    return rtx_target(compute_capabilities)


def check_buildable(export_manifest: dict, onnx_dir: Path, target: Target,
                    options: BuildOptions) -> None:
    """Refuse, before the builder runs, what this target cannot build."""
    if target.flavour != "rtx":
        return
    if "7.5" in target.compute_capabilities:
        precision = export_manifest["precision"]
        high = export_manifest.get("high_precision_dtype", "float32")
        if precision == "fp32" or (precision == "int8" and high != "float16"):
            what = ("an fp32 graph" if precision == "fp32" else
                    "an INT8 graph whose unquantized part is fp32")
            raise VrfamError(f"{onnx_dir} is {what}: TensorRT-RTX has no FP32 matrix "
                             "multiplies for Turing (sm 7.5); export fp16 (`vrfam-rt export "
                             "--precision fp16`) or leave 7.5 out of the compute capabilities")
    if options.refittable:
        import torch
        if not torch.cuda.is_available():
            raise VrfamError("`refittable=True` with TensorRT-RTX needs an NVIDIA GPU here (the "
                             "refit check runs CUDA); build without `refittable=True`")


def build_plan(onnx_path: Path, profile: dict, options: BuildOptions,
               timing_cache: Path | None) -> bytes:
    """Serialized engine for one ONNX file (Polygraphy loaders; TensorRT imported lazily)."""
    trt = import_tensorrt()
    from polygraphy.backend.trt import (CreateConfig, EngineBytesFromNetwork,
                                        NetworkFromOnnxPath, Profile)

    trt_profile = Profile()
    for name, shapes in profile.items():
        trt_profile.add(name, min=shapes["min"], opt=shapes["opt"], max=shapes["max"])
    cache = str(timing_cache) if timing_cache and timing_cache.exists() else None
    config = CreateConfig(
        profiles=[trt_profile],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(options.workspace_gib * 2**30)},
        builder_optimization_level=options.opt_level,
        refittable=options.refittable or None,
        load_timing_cache=cache)
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
    save = str(timing_cache) if timing_cache else None
    plan = EngineBytesFromNetwork(network, config=config, save_timing_cache=save)()
    if plan is None:
        raise VrfamError(f"TensorRT could not build {onnx_path}; rerun with "
                         "POLYGRAPHY_LOG_LEVEL=VERBOSE for the builder log")
    return bytes(plan)


Builder = Callable[[Path, dict, BuildOptions, "Path | None"], bytes]


def build_engines(onnx_dir: Path, out: Path, max_batch: int = 8, opt_batch: int | None = None,
                  options: BuildOptions = BuildOptions(), timing_cache: Path | None = None,
                  target: Target | None = None, builder: Builder | None = None,
                  progress: Callable[[str, bool], None] | None = None,
                  components: tuple[str, ...] | None = None) -> dict:
    """Plans for every file of an export precision folder, reusing cached ones.

    Returns the engine manifest. `components` limits the build to some of the folder's
    files (default: all). `target` defaults to TensorRT on this machine's GPU;
    `builder` to the target flavour's plan builder (a parameter so the orchestration is
    testable without either).
    """
    onnx_dir, out = Path(onnx_dir), Path(out)
    export_manifest = _read_export_manifest(onnx_dir)
    target = target or detect_target()
    check_buildable(export_manifest, onnx_dir, target, options)
    if target.flavour == "rtx":
        timing_cache = None                # TensorRT-RTX times nothing ahead of time
        if builder is None:
            from vrfam_rt.engines.rtx import build_plan_rtx

            def builder(onnx_path, profile, options, timing_cache):
                return build_plan_rtx(onnx_path, profile, options, target.compute_capabilities)
    else:
        timing_cache = Path(timing_cache) if timing_cache else out / "timing.cache"
        builder = builder or build_plan
    header = {"onnx_dir": str(onnx_dir), "precision": export_manifest["precision"],
              "bundle_digest": export_manifest["bundle_digest"],
              "attributes": export_manifest["attributes"], "io_dtype": "float32",
              "flavour": target.flavour, "version": target.version, "gpu": target.gpu,
              "compute_capabilities": list(target.compute_capabilities)}
    unknown = set(components or ()) - set(export_manifest["files"])
    if unknown:
        raise VrfamError(f"{onnx_dir} holds no {sorted(unknown)[0]} graph; it holds "
                         f"{', '.join(export_manifest['files'])}")
    for component, spec in export_manifest["files"].items():
        if components and component not in components:
            continue
        onnx_path = onnx_dir / spec["file"]
        onnx_sha = onnx_digest(onnx_dir, spec)
        profile = batch_profile(spec["inputs"], max_batch, opt_batch,
                                export_manifest.get("max_batch"))
        key = engine_key(onnx_sha, target, profile, asdict(options))
        with locked(out):
            if cached_entry(out, component, key):
                if progress:
                    progress(component, True)
                continue
            if progress:
                progress(component, False)
            start = time.perf_counter()
            plan = builder(onnx_path, profile, options, timing_cache)
            entry = {"key": key, "onnx": str(onnx_path), "onnx_sha256": onnx_sha,
                     "target": asdict(target), "profile": profile, "builder": asdict(options),
                     "inputs": spec["inputs"], "outputs": spec["outputs"],
                     "build_seconds": round(time.perf_counter() - start, 1)}
            store(out, component, plan, entry, header)
    return manifests.read(out, "engines")


def onnx_digest(onnx_dir: Path, spec: dict) -> str:
    """sha256 of the ONNX file as it is now (and of its external data, if any)."""
    hashes = [sha256_file(onnx_dir / name) for name in sorted(spec["sha256"])]
    return hashes[0] if len(hashes) == 1 else sha256_bytes("".join(hashes).encode())


def _read_export_manifest(onnx_dir: Path) -> dict:
    manifest = manifests.read(onnx_dir, "export")
    for spec in manifest["files"].values():
        if not (onnx_dir / spec["file"]).is_file():
            raise VrfamError(f"{onnx_dir / spec['file']} is missing; re-run vrfam-rt export")
    return manifest
