"""From a bundle to a runnable backend: the build-on-demand step of the run-time code.

`open_runtime` is what `vrfam-rt edit`, `eval`, `bench` and `profile` do before they
run anything, and what `EditPipeline.from_bundle` does for Python users: for `ort` and
`openvino` it exports the bundle's ONNX graphs (and for `int8` calibrates them on
samples of the bundle's generator), for `trt` it exports FP16 graphs and builds plans
(TensorRT on a local GPU, else TensorRT-RTX ahead of time), each once, into a cache
folder per bundle (keyed by the bundle's digest); later calls reuse what is there once
it matches its manifest, and make again, after a one-line note, what is damaged
(vrfam_rt.cache: hashed once per file, then stamped; one process at a time per bundle).
`auto` picks trt where plans can run on a local NVIDIA GPU, else openvino, else ort.
What cannot be made here (plans need a GPU to run) is one VrfamError or
MissingDependency naming the command or the missing piece.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from vrfam_rt import manifests
from vrfam_rt.cache import locked, stamped, usable
from vrfam_rt.errors import UsageError

BACKENDS = ("eager", "ort", "openvino", "trt", "auto")
CALIBRATION_SAMPLES = 16     # generator samples an on-demand INT8 calibration uses


def default_cache_root() -> Path:
    """Where the per-bundle caches live unless told otherwise: ~/.cache/vrfam-rt."""
    return Path.home() / ".cache" / "vrfam-rt"


def cache_dir(bundle, root: str | Path | None = None) -> Path:
    """The bundle's cache folder under `root` (exported graphs, INT8 graphs, plans)."""
    return Path(root or default_cache_root()) / bundle.digest[:16]


def bundle_args(bundle) -> str:
    """The command-line options that name `bundle` (for hints that must work as printed):
    --bundle DIR for a saved one, --config C --seed S for a seeded random one."""
    if bundle.path is not None:
        return f"--bundle {bundle.path}"
    seeds = {p.get("seed") for p in bundle.provenance.values() if p.get("source") == "random"}
    if len(seeds) == 1 and len(bundle.provenance) == len(bundle.modules):
        return f"--config {bundle.config.name} --seed {seeds.pop()}"
    return "--bundle <this bundle, saved>"


def exported(bundle, cache: Path, precision: str, say: Callable[[str], None]) -> Path:
    """`cache/<precision>`, the bundle's ONNX graphs of that precision, exported once
    (again when damaged). The caller holds the cache's lock."""
    from vrfam_rt.export.lowering import export_bundle

    folder = cache / precision
    if not usable(folder, "export", bundle.digest, f"{precision} graphs", say):
        say(f"exporting {precision} ONNX into {cache} (once per bundle) ...")
        export_bundle(bundle, cache, (precision,))
        stamped(folder, "export", bundle.digest)
    return folder


def calibrated(bundle, cache: Path, target: str, say: Callable[[str], None]) -> Path:
    """`cache/int8-<target>`, the bundle's INT8 Q/DQ graphs (encoder and generator),
    calibrated once (again when damaged) on CALIBRATION_SAMPLES samples of its generator.
    The caller holds the cache's lock."""
    from vrfam_rt.calibration.calibrate import calibrate

    folder = cache / f"int8-{target}"
    if not usable(folder, "export", bundle.digest, f"INT8 graphs for {target}", say):
        exported(bundle, cache, "fp32", say)     # the graphs calibration quantizes
        say(f"calibrating INT8 graphs into {folder} on {CALIBRATION_SAMPLES} generator samples "
            f"(once per bundle; `vrfam-rt calibrate {bundle_args(bundle)} --target {target} "
            f"--out {cache} --force` redoes it with other data) ...")
        calibrate(bundle, cache, ("encoder", "generator"), target,
                  samples=CALIBRATION_SAMPLES, progress=lambda step: say(f"  {step} ..."))
        return stamped(folder, "export", bundle.digest)
    from vrfam_rt.calibration.quantize import PLAN_VERSION

    held = manifests.read(folder, "export")
    # made before calibration plans were recorded, by an older plan, or without the
    # generator (a user's --calibration choice, plan None, is theirs to keep)
    if "plan" not in held or held["plan"] not in (None, PLAN_VERSION) \
            or "generator" not in held["files"]:
        say(f"note: {folder} holds INT8 graphs of an earlier or partial calibration "
            f"({', '.join(held['files'])}); `vrfam-rt calibrate {bundle_args(bundle)} --target "
            f"{target} --components encoder,generator --samples {CALIBRATION_SAMPLES} --out "
            f"{cache} --force` redoes them with the current plan")
    return folder


def choose_backend() -> tuple[str, str]:
    """`auto`: (backend, why): trt where TensorRT plans can run on a local NVIDIA GPU,
    else openvino where it is installed (CPU), else ort."""
    import importlib.util

    from vrfam_rt.environment import tensorrt_status

    usable, reason = tensorrt_status()
    if usable:
        return "trt", f"{reason} on the local GPU"
    why = f"no TensorRT plans can run here: {reason.split(';')[0]}"
    if importlib.util.find_spec("openvino") is not None:
        return "openvino", f"{why}; OpenVINO on the CPU"
    return "ort", f"{why}, and OpenVINO is not installed; ONNX Runtime on the CPU"


def open_runtime(bundle, backend: str = "eager", precision: str = "fp32", device: str = "cpu",
                 threads: int | None = None, cache_root: str | Path | None = None,
                 cuda_graphs: bool = False, say: Callable[[str], None] | None = None,
                 max_batch: int = 8):
    """A backend (vrfam_rt.backends.Backend) running `bundle`, its graphs made on demand.

    `max_batch` bounds the batch TensorRT plans accept (their optimisation profile); the
    ONNX graphs take any batch up to the export's."""
    from vrfam_rt.backends import open_backend
    from vrfam_rt.backends.ort import OrtBackend

    say = say or (lambda message: None)
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "auto" and cuda_graphs:
        backend = "eager"               # CUDA-graph replay is the eager backend's
    if backend == "auto":
        backend, why = choose_backend()
        say(f"backend auto: {backend} ({why})")
        if backend == "trt" and device == "cpu":
            device = "cuda"
        if backend != "trt" and precision == "fp16":
            precision = "fp32"          # the CPU backends' fp16 is emulated, never faster
    if backend == "eager":
        return open_backend("eager", bundle=bundle, device=device, precision=precision,
                            cuda_graphs=cuda_graphs)
    if cuda_graphs:
        raise UsageError("--cuda-graphs applies to the eager backend (TensorRT plans replay "
                         "their own graphs)")
    cache = cache_dir(bundle, cache_root)
    if backend == "openvino":
        from vrfam_rt.backends.openvino import PRECISIONS, OpenVinoBackend, import_openvino

        import_openvino()
        if device != "cpu":
            raise UsageError(f"the openvino backend runs on the CPU, not {device}")
        if precision not in PRECISIONS:
            raise UsageError(f"the openvino backend runs {', '.join(PRECISIONS)}, "
                             f"not {precision}")
        with locked(cache):
            fp32 = exported(bundle, cache, "fp32", say)
            int8 = calibrated(bundle, cache, "openvino", say) if precision == "int8" else None
            usable(cache / "openvino", "openvino", bundle.digest, "OpenVINO compiled models",
                   say)                 # a damaged one goes; OpenVINO compiles anew
        if int8:
            runner = OpenVinoBackend(int8, "int8", threads, cache / "openvino", fallback=fp32)
        else:
            runner = OpenVinoBackend(fp32, precision, threads, cache / "openvino")
        if runner.note:
            say(runner.note)
        return runner
    if backend == "ort":
        if precision == "bf16":
            raise UsageError("the ort backend runs fp32, fp16 or int8, not bf16")
        with locked(cache):
            if precision != "int8":
                return OrtBackend(exported(bundle, cache, precision, say), device, threads)
            int8 = calibrated(bundle, cache, "cpu", say)
            fp32 = exported(bundle, cache, "fp32", say)
        return OrtBackend(int8, device, threads, fallback=fp32)
    from vrfam_rt.engines.build import build_engines, choose_target
    target = choose_target("auto")
    precision = "fp16" if precision == "fp32" else precision
    if precision not in ("fp16", "int8"):
        raise UsageError(f"the trt backend runs fp16 or int8 plans, not {precision}")
    plans = cache / f"engines-{precision}"
    with locked(cache):
        if precision == "int8":
            source = calibrated(bundle, cache, "trt", say)
        else:
            source = exported(bundle, cache, precision, say)
        usable(plans, "engines", bundle.digest, f"{precision} plans", say)   # a damaged one goes
        say(f"plans for {target.describe()} in {plans} ...")
        build_engines(source, plans, max_batch=max_batch, target=target)
        stamped(plans, "engines", bundle.digest)
    return open_backend("trt", engine_dir=plans, device=device if device != "cpu" else "cuda")
