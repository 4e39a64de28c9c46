"""From a bundle to a runnable backend: the build-on-demand step of the run-time code.

`open_runtime` is what `vrfam-rt edit`, `eval`, `bench` and `profile` do before they
run anything, and what `EditPipeline.from_bundle` does for Python users: for `ort` it
exports the bundle's ONNX graphs, for `trt` it exports FP16 graphs and builds plans
(TensorRT on a local GPU, else TensorRT-RTX ahead of time), each once, into a cache
folder per bundle (keyed by the bundle's digest); later calls reuse what is there.
What cannot be made here (INT8 graphs need `vrfam-rt calibrate`, plans need a GPU to
run) is one VrfamError or MissingDependency naming the command or the missing piece.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from vrfam_rt.errors import VrfamError

BACKENDS = ("eager", "ort", "trt")


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
    """`cache/<precision>`, the bundle's ONNX graphs of that precision, exported once."""
    from vrfam_rt.export.lowering import export_bundle

    if not (cache / precision).is_dir():
        say(f"exporting {precision} ONNX into {cache} (once per bundle) ...")
        export_bundle(bundle, cache, (precision,))
    return cache / precision


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
        raise VrfamError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "eager":
        return open_backend("eager", bundle=bundle, device=device, precision=precision,
                            cuda_graphs=cuda_graphs)
    if cuda_graphs:
        raise VrfamError("--cuda-graphs applies to the eager backend (TensorRT plans replay "
                         "their own graphs)")
    cache = cache_dir(bundle, cache_root)
    if backend == "ort":
        if precision == "bf16":
            raise VrfamError("the ort backend runs fp32, fp16 or int8, not bf16")
        if precision == "int8":
            if not (cache / "int8-cpu").is_dir():
                raise VrfamError(f"no INT8 graphs in {cache / 'int8-cpu'}; run `vrfam-rt calibrate "
                                 f"{bundle_args(bundle)} --target cpu --samples 64 --out "
                                 f"{cache}` first")
            return OrtBackend(cache / "int8-cpu", device, threads,
                              fallback=exported(bundle, cache, "fp32", say))
        return OrtBackend(exported(bundle, cache, precision, say), device, threads)
    from vrfam_rt.engines.build import build_engines, choose_target
    target = choose_target("auto")
    precision = "fp16" if precision == "fp32" else precision
    if precision not in ("fp16", "int8"):
        raise VrfamError(f"the trt backend runs fp16 or int8 plans, not {precision}")
    plans = cache / f"engines-{precision}"
    if precision == "int8":
        source = cache / "int8-trt"
        if not source.is_dir():
            raise VrfamError(f"no INT8 graphs for TensorRT in {source}; run `vrfam-rt calibrate "
                             f"{bundle_args(bundle)} --target trt --samples 64 --out {cache}` "
                             "first")
    else:
        source = exported(bundle, cache, precision, say)
    say(f"plans for {target.describe()} in {plans} ...")
    build_engines(source, plans, max_batch=max_batch, target=target)
    return open_backend("trt", engine_dir=plans, device=device if device != "cpu" else "cuda")
