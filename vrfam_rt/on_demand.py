"""From a bundle to a runnable backend: the build-on-demand step of the run-time code.

`open_runtime` is what `vrfam-rt edit`, `eval`, `bench` and `profile` do before they
run anything, and what `EditPipeline.from_bundle` does for Python users: for `ort` and
`openvino` it exports the bundle's ONNX graphs (and for `int8` calibrates them on
samples of the bundle's generator), for `trt` it exports FP16 graphs and builds plans
(TensorRT on a local GPU, else TensorRT-RTX ahead of time), each once, into a cache
folder per bundle (keyed by the bundle's digest); later calls reuse what is there once
it matches its manifest, and make again, after a one-line note, what is damaged
(vrfam_rt.cache: hashed once per file, then stamped; one process at a time per bundle).
What a backend needs, and what `auto` picks, is declared in vrfam_rt.backends.registry;
this module makes it. What cannot be made here (plans need a GPU to run) is one VrfamError or
MissingDependency naming the command or the missing piece.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

from vrfam_rt import manifests
from vrfam_rt.backends import registry
from vrfam_rt.cache import locked, stamped, usable

CALIBRATION_SAMPLES = 16     # generator samples an on-demand INT8 calibration uses
MAX_BATCH = 8    # rows per stage call: the pipeline's batches, the largest TensorRT plans take


def default_cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where the per-bundle caches live, for the API and the CLI alike: $VRFAM_RT_CACHE,
    else $XDG_CACHE_HOME/vrfam-rt, else ~/.cache/vrfam-rt (`environ`: os.environ)."""
    environ = os.environ if environ is None else environ
    if environ.get("VRFAM_RT_CACHE"):
        return Path(environ["VRFAM_RT_CACHE"])
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]) / "vrfam-rt"
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


def open_runtime(bundle, backend: str = "auto", precision: str = "fp32",
                 device: str | None = None, threads: int | None = None,
                 cache_root: str | Path | None = None, cuda_graphs: bool = False,
                 say: Callable[[str], None] | None = None, max_batch: int = MAX_BATCH):
    """A backend (vrfam_rt.backends.Backend) running `bundle`, its folders made on demand:
    decide (backends.registry.resolve), make what the choice needs into the bundle's
    cache (export -> calibrate -> build, each once), open.

    `device=None` is the backend's own (trt: cuda, the others: cpu); `cache_root=None` is
    `default_cache_root()`; `max_batch` bounds the batch TensorRT plans accept (their
    optimisation profile); the ONNX graphs take any batch up to the export's."""
    say = say or (lambda message: None)
    choice, folders = prepare(bundle, backend, precision, device, cache_root, cuda_graphs, say,
                              max_batch)
    runner = registry.open_folders(choice.spec.name, bundle=bundle, precision=choice.precision,
                                   device=choice.device, folders=folders, threads=threads,
                                   cuda_graphs=cuda_graphs)
    if runner.note:
        say(runner.note)
    return runner


def prepare(bundle, backend: str = "auto", precision: str = "fp32", device: str | None = None,
            cache_root: str | Path | None = None, cuda_graphs: bool = False,
            say: Callable[[str], None] | None = None, max_batch: int = MAX_BATCH):
    """`open_runtime` but the opening: (the registry's Choice, the folders it opens), each
    made once into the bundle's cache. For a process that hands the opening to others
    (`serve`'s model instances) and so holds no runtime of its own."""
    from vrfam_rt.environment import parse_device
    from vrfam_rt.fileio import writable_folder

    say = say or (lambda message: None)
    choice = registry.resolve(backend, precision, device and parse_device(device), cuda_graphs)
    for note in choice.notes:
        say(note)
    folders = {}
    if choice.needs or choice.spec.compiled_cache:
        writable_folder(cache_root or default_cache_root(), "cache_root")
        cache = cache_dir(bundle, cache_root)
        with locked(cache):
            folders = made(bundle, cache, choice, say, max_batch)
    return choice, folders


def made(bundle, cache: Path, choice, say: Callable[[str], None], max_batch: int) -> dict:
    """The folders `choice` opens ({"graphs", "fallback", "plans", "compiled": path}),
    each made once into `cache` (again when damaged). The caller holds the cache's lock."""
    def folder(name: str) -> Path:
        if name.startswith("int8-"):
            return calibrated(bundle, cache, name.removeprefix("int8-"), say)
        return exported(bundle, cache, name, say)

    needs, folders = choice.needs, {}
    if needs:
        folders = {"fallback": needs.fallback, "graphs": needs.graphs}
        folders = {role: folder(name) for role, name in folders.items() if name}
        if needs.plans:
            folders["plans"] = built(bundle, cache, folders["graphs"], needs.plans, say,
                                     max_batch)
    if choice.spec.compiled_cache:
        compiled = cache / choice.spec.compiled_cache
        usable(compiled, "openvino", bundle.digest, f"{choice.spec.library} compiled models",
               say)                               # a damaged one goes; it compiles anew
        folders["compiled"] = compiled
    return folders


def built(bundle, cache: Path, graphs: Path, name: str, say: Callable[[str], None],
          max_batch: int) -> Path:
    """`cache/<name>`, TensorRT plans of `graphs` for this machine's target (TensorRT
    on a local GPU, else TensorRT-RTX ahead of time); the build reuses plans that match.
    The caller holds the cache's lock."""
    from vrfam_rt.engines.build import build_engines, choose_target

    target = choose_target("auto")
    plans = cache / name
    usable(plans, "engines", bundle.digest, f"{name} plans", say)   # a damaged one goes
    say(f"plans for {target.describe()} in {plans} ...")
    build_engines(graphs, plans, max_batch=max_batch, target=target)
    return stamped(plans, "engines", bundle.digest)
