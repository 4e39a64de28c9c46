"""Every backend, declared once as data: what it runs, where, and what must be made first.

A `Spec` says which precisions a backend runs (and which asked precision it runs as
another, told to the user), on which devices, which folders of the per-bundle cache it
opens for each precision (`Needs`: exported graphs, INT8 graphs of a calibration target,
plans), and what it can do (static shapes, CUDA graphs). `resolve` turns what a caller
asked (backend or `auto`, precision, device) into a `Choice` or one UsageError, in one
place and importing nothing heavy; `vrfam_rt.on_demand` makes the choice's folders and
opens it; the CLI's choices and help, `bench`'s configurations and `info` read the
same specs. Backend names are compared here and nowhere outside `backends/`.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

from vrfam_rt.errors import MissingDependency, UsageError

AUTO = "auto"
PRECISIONS = ("fp32", "fp16", "bf16", "int8")   # every precision some backend runs


@dataclass(frozen=True)
class Needs:
    """The cache folders a backend opens for one precision (vrfam_rt.cache's layout)."""

    graphs: str                   # ONNX graphs it runs: "fp32", "fp16" (exported) or
    #                               "int8-<target>" (calibrated for that target)
    fallback: str | None = None   # fp32 graphs for the stages an INT8 folder lacks
    plans: str | None = None      # "engines-<precision>": plans built from `graphs`

    def folders(self) -> tuple[str, ...]:
        """Every folder, in the order they are made (what a folder is built from first)."""
        return tuple(f for f in (self.fallback, self.graphs, self.plans) if f)


def _eager_probe() -> tuple[bool, str]:
    import torch

    return True, "cpu" + (", cuda" if torch.cuda.is_available() else "")


def _module_probe(module: str, hint: str) -> Callable[[], tuple[bool, str]]:
    """Whether `module` is installed, without importing it."""
    def probe() -> tuple[bool, str]:
        if importlib.util.find_spec(module) is None:
            return False, hint
        return True, f"{module} is installed"
    return probe


def _ort_probe() -> tuple[bool, str]:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return False, "pip install onnxruntime"
    return True, ", ".join(ort.get_available_providers())


def _openvino_details() -> tuple[bool, str]:
    from vrfam_rt.environment import openvino_status

    return openvino_status()


def _tensorrt_probe() -> tuple[bool, str]:
    """Whether plans can run here: TensorRT imports and a CUDA device exists."""
    from vrfam_rt.environment import tensorrt_status

    return tensorrt_status()


def _tensorrt_details() -> tuple[bool, str]:
    """The probe, and whether TensorRT-RTX builds plans here."""
    from vrfam_rt.environment import tensorrt_rtx_version

    usable, reason = _tensorrt_probe()
    rtx = tensorrt_rtx_version()
    if rtx:
        reason += f"; TensorRT-RTX {rtx} builds plans here" + ("" if usable else
                                                               " (running them needs a GPU)")
    return usable, reason


@dataclass(frozen=True)
class Spec:
    """One backend, as data."""

    name: str
    library: str                            # the runtime it drives, as users know it
    summary: str                            # one line: --help, `info`
    opener: str                             # "module:Class", a vrfam_rt.backends.Backend
    precisions: tuple[str, ...]             # what it runs
    devices: tuple[str, ...]                # device kinds; the first is its default
    needs: Mapping[str, Needs] = field(default_factory=dict)   # per precision (none: the
    #                                         bundle's own networks)
    remap: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # asked precision ->
    #                                         (the one it runs, why), always told
    auto_remap: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # the same, when
    #                                         `auto` picked it (a precision that is never faster here)
    precision_devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # precision
    #                                         -> the device kinds it needs, and why below
    precision_device_why: Mapping[str, str] = field(default_factory=dict)
    static_shapes: bool = False             # each new batch size compiles (callers pad)
    cuda_graphs: bool = False               # replays its stages as CUDA graphs
    holds_device_memory: bool = False       # an open one holds GPU memory until dropped
    int8_targets: tuple[str, ...] = ()      # calibration targets whose INT8 graphs it runs,
    #                                         the one it calibrates for first
    compiled_cache: str | None = None       # a cache folder of its own compiled models
    probe: Callable[[], tuple[bool, str]] = _eager_probe    # (usable here, what it found):
    #                                         cheap, for `auto`
    details: Callable[[], tuple[bool, str]] | None = None   # the same at length, for `info`
    #                                         (None: the probe's)

    def runs(self) -> tuple[str, ...]:
        """Every precision it accepts: those it runs and those it remaps."""
        return (*self.precisions, *self.remap)

    def describe_precisions(self) -> str:
        """E.g. "fp16, int8; fp32 runs as fp16", "fp32, bf16, fp16 (fp16 on cuda)"."""
        only = [f"{p} on {' or '.join(k)}" for p, k in self.precision_devices.items()]
        return (", ".join(self.precisions)
                + "".join(f"; {a} runs as {b}" for a, (b, _) in self.remap.items())
                + (f" ({'; '.join(only)})" if only else ""))

    def open_class(self):
        module, _, name = self.opener.partition(":")
        return getattr(importlib.import_module(module), name)


def _int8(target: str) -> Needs:
    return Needs(graphs=f"int8-{target}", fallback="fp32")


SPECS: Mapping[str, Spec] = MappingProxyType({spec.name: spec for spec in (
    Spec("eager", "PyTorch", "PyTorch, the bundle's own networks", "vrfam_rt.backends.eager:EagerBackend",
         precisions=("fp32", "bf16", "fp16"), devices=("cpu", "cuda"),
         precision_devices={"fp16": ("cuda",)},
         precision_device_why={"fp16": "float16 convolutions on the CPU are hundreds of times "
                                       "slower; use bf16 there"},
         cuda_graphs=True, probe=_eager_probe),
    Spec("ort", "ONNX Runtime", "ONNX Runtime on the exported graphs", "vrfam_rt.backends.ort:OrtBackend",
         precisions=("fp32", "fp16", "int8"), devices=("cpu", "cuda"),
         needs={"fp32": Needs("fp32"), "fp16": Needs("fp16"), "int8": _int8("cpu")},
         auto_remap={"fp16": ("fp32", "fp16 on the CPU is emulated, never faster")},
         int8_targets=("cpu",), probe=_ort_probe),
    Spec("openvino", "OpenVINO", "OpenVINO on the exported graphs",
         "vrfam_rt.backends.openvino:OpenVinoBackend",
         precisions=("fp32", "bf16", "int8"), devices=("cpu",),
         needs={"fp32": Needs("fp32"), "bf16": Needs("fp32"), "int8": _int8("openvino")},
         auto_remap={"fp16": ("fp32", "fp16 on the CPU is emulated, never faster")},
         static_shapes=True, int8_targets=("openvino", "cpu"), compiled_cache="openvino",
         probe=_module_probe("openvino", "pip install openvino"), details=_openvino_details),
    Spec("trt", "TensorRT", "TensorRT plans (TensorRT on a local GPU, else TensorRT-RTX ahead "
         "of time)",
         "vrfam_rt.backends.trt:TrtBackend",
         precisions=("fp16", "int8"), devices=("cuda",),
         needs={"fp16": Needs("fp16", plans="engines-fp16"),
                "int8": Needs("int8-trt", plans="engines-int8")},
         remap={"fp32": ("fp16", "TensorRT plans are built fp16 (fp32 accumulation)")},
         int8_targets=("trt",), holds_device_memory=True, probe=_tensorrt_probe,
         details=_tensorrt_details),
)})
NAMES = tuple(SPECS)                    # every backend, in the order help lists them
CHOICES = (*NAMES, AUTO)                # what a command that runs one backend takes
AUTO_ORDER = ("trt", "openvino", "ort")  # auto: the first usable on the device


def spec(name: str) -> Spec:
    """The spec of a backend by name, or a UsageError listing the names."""
    if name not in SPECS:
        raise UsageError(f"unknown `backend={name!r}`; choose from {', '.join(CHOICES)}")
    return SPECS[name]


@dataclass(frozen=True)
class Choice:
    """What runs: a backend, the precision it runs (after any remap), the device, the
    cache folders it opens, and the notes the user is told."""

    spec: Spec
    precision: str
    device: str
    needs: Needs | None
    notes: tuple[str, ...] = ()


def _kind(device: str) -> str:
    return device.split(":")[0]


def pick(device: str | None = None, cuda_graphs: bool = False,
         probes: Mapping[str, Callable[[], tuple[bool, str]]] | None = None) -> tuple[Spec, str]:
    """`auto`: (spec, why): the backend that replays CUDA graphs when they are asked for,
    else the first of AUTO_ORDER that is usable here and runs on `device` (trt where
    plans can run on a local NVIDIA GPU, else openvino, else ort). `probes` replaces the
    specs' own checks (tests)."""
    if cuda_graphs:
        chosen = next(s for s in SPECS.values() if s.cuda_graphs)
        return chosen, "CUDA graphs are replayed by it"
    skipped = []
    for name in AUTO_ORDER:
        candidate = SPECS[name]
        if device is not None and _kind(device) not in candidate.devices:
            continue
        usable, why = (probes or {}).get(name, candidate.probe)()
        if usable:
            return candidate, "; ".join(skipped) or why
        skipped.append(f"no {name}: {why.split(';')[0]}")
    raise MissingDependency(f"no backend runs on `device={device!r}` here ({'; '.join(skipped)})")


def resolve(backend: str = AUTO, precision: str = "fp32", device: str | None = None,
            cuda_graphs: bool = False,
            probes: Mapping[str, Callable[[], tuple[bool, str]]] | None = None) -> Choice:
    """What the caller asked -> the Choice that runs, or one UsageError naming the
    argument. `device=None` is the backend's own default (trt: cuda; the others: cpu)."""
    notes = []
    if precision not in PRECISIONS:
        raise UsageError(f"unknown `precision={precision!r}`; choose from {', '.join(PRECISIONS)}")
    if backend == AUTO:
        chosen, why = pick(device, cuda_graphs, probes)
        notes.append(f"backend auto: {chosen.name} ({why})")
        if precision in chosen.auto_remap:
            runs, reason = chosen.auto_remap[precision]
            notes.append(f"precision {precision} runs as {runs} on {chosen.name} ({reason})")
            precision = runs
    else:
        chosen = spec(backend)
        if cuda_graphs and not chosen.cuda_graphs:
            able = ", ".join(s.name for s in SPECS.values() if s.cuda_graphs)
            raise UsageError(f"`cuda_graphs=True` is for `backend={able!r}`, not "
                             f"`backend={chosen.name!r}`")
    if precision in chosen.remap:
        runs, reason = chosen.remap[precision]
        notes.append(f"precision {precision} runs as {runs} on {chosen.name} ({reason})")
        precision = runs
    if precision not in chosen.precisions:
        raise UsageError(f"`backend={chosen.name!r}` runs {', '.join(chosen.runs())}, "
                         f"not `precision={precision!r}`")
    device = device or chosen.devices[0]
    if _kind(device) not in chosen.devices:
        raise UsageError(f"`backend={chosen.name!r}` runs on {' or '.join(chosen.devices)}, "
                         f"not `device={device!r}`")
    kinds = chosen.precision_devices.get(precision)
    if kinds and _kind(device) not in kinds:
        raise UsageError(f"`backend={chosen.name!r}` runs `precision={precision!r}` on "
                         f"{' or '.join(kinds)}, not `device={device!r}` "
                         f"({chosen.precision_device_why[precision]})")
    return Choice(chosen, precision, device, chosen.needs.get(precision), tuple(notes))


def default_device(names) -> str:
    """The device one run of several backends shares (bench's baseline runs beside
    them): the first non-CPU default among them, else the CPU."""
    return next((SPECS[n].devices[0] for n in names if SPECS[n].devices[0] != "cpu"), "cpu")


def graph_folders(name: str, precision: str) -> tuple[str, ...]:
    """The export folders (of an export root) a backend can run `precision` from, the
    preferred first: its own needs, then INT8 graphs of the other targets it runs."""
    chosen = SPECS[name]
    own = chosen.needs[precision].graphs
    others = [f"int8-{t}" for t in chosen.int8_targets] if precision == "int8" else []
    return tuple(dict.fromkeys([own, *others]))


def open_folders(name: str, *, bundle=None, precision: str | None = None,
                 device: str | None = None, folders: Mapping[str, Path] | None = None,
                 threads: int | None = None, cuda_graphs: bool = False):
    """Open backend `name` on `folders` ({"graphs" | "fallback" | "plans" | "compiled":
    path}, what its Needs names, made by the runtime or by the user's commands)."""
    chosen = spec(name)
    return chosen.open_class().open(bundle=bundle, precision=precision,
                                    device=device or chosen.devices[0],
                                    folders=dict(folders or {}), threads=threads,
                                    cuda_graphs=cuda_graphs)


def availability() -> dict[str, str]:
    """{backend: what its probe found here, or "unavailable: " and why} (`vrfam-rt info`)."""
    found = {}
    for name, each in SPECS.items():
        usable, reason = (each.details or each.probe)()
        found[name] = reason if usable else f"unavailable: {reason}"
    return found


def describe_devices() -> str:
    """--device's default, from the specs: "eager cpu, ort cpu, openvino cpu, trt cuda"."""
    return ", ".join(f"{s.name} {s.devices[0]}" for s in SPECS.values())


def describe_help() -> str:
    """--backend's help text, from the specs."""
    parts = [f"{s.name}: {s.summary}" + (f", {' or '.join(s.devices)} only"
                                         if len(s.devices) == 1 else "")
             for s in SPECS.values()]
    return ("; ".join(parts) + f"; auto: the first of {', '.join(AUTO_ORDER)} usable here. "
            "Graphs are exported, INT8 graphs calibrated and plans built once into the cache.")

