"""What this machine offers: library versions, usable backends, devices."""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import logging
import os
import platform

from vrfam_rt.version import __version__

LIBRARIES = ("torch", "numpy", "safetensors", "onnx", "onnxruntime", "openvino", "tensorrt",
             "tensorrt-rtx-cu12",
             "polygraphy")


def parse_device(value, name: str = "device", auto: bool = False) -> str:
    """'cpu', 'cuda' or 'cuda:N' (and 'auto' where allowed), lower-cased; a UsageError
    naming `name` for anything else."""
    from vrfam_rt.errors import UsageError

    text = str(value).strip().lower()
    kind, _, index = text.partition(":")
    if text in ("cpu", "cuda") or (kind == "cuda" and index.isdigit()) or (auto and text == "auto"):
        return text
    raise UsageError(f"{name} {value}: choose cpu, cuda or cuda:N" + (" (or auto)" if auto else ""))


def import_library(module: str, product: str, hint: str):
    """An optional library's module, or MissingDependency naming what to install."""
    from vrfam_rt.errors import MissingDependency
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or OSError from a stub or a missing .so
        raise MissingDependency(f"{product} is not importable here ({type(exc).__name__}); "
                                f"{hint}") from None


TENSORRT_HINT = ("install TensorRT on a machine with an NVIDIA GPU: pip install 'vrfam-rt[trt]' "
                 "(TensorRT 10.x: pip install tensorrt-cu12)")
TENSORRT_RTX_HINT = "pip install 'vrfam-rt[rtx]' (TensorRT-RTX: pip install tensorrt-rtx-cu12)"


def import_tensorrt():
    """The tensorrt module (TensorRT 10/11), or MissingDependency naming what to install."""
    return import_library("tensorrt", "TensorRT", TENSORRT_HINT)


def import_tensorrt_rtx():
    """The tensorrt_rtx module, or MissingDependency naming what to install."""
    return import_library("tensorrt_rtx", "TensorRT-RTX", TENSORRT_RTX_HINT)


_LOGGER = None


def quiet_logger(trt):
    """One quiet logger per process (TensorRT-RTX keeps the first one registered): it
    prints nothing and keeps the errors since the last call for one-line messages (its
    header checks on a machine without a GPU log fatal-looking lines about the driver)."""
    global _LOGGER
    if _LOGGER is None:
        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors = []

            def log(self, severity, msg):
                if int(severity) <= int(trt.ILogger.Severity.ERROR):
                    self.errors.append(msg)
        _LOGGER = Logger()
    _LOGGER.errors.clear()
    return _LOGGER


_KEEPING_FREED_MEMORY = False
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def _mallopt():
    """glibc's mallopt and malloc_trim, or None off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return mallopt, trim


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from its heap and to keep freed memory.

    By default glibc maps every block over 32 MiB afresh and returns it on free, so
    each 1024x1024 activation page-faults again at every layer: the eager generator
    spends a third of its time there. A process-wide setting for the CLI's compute
    commands: blocks up to 1 GiB come from the heap, and freed heap memory is kept until
    2 GiB of it is free (mallopt takes a C int: INT_MAX is the largest threshold; a larger
    Python int would be cut to its low 32 bits, 2**34 to 0, which trims on every free).
    A no-op (False) off glibc.
    """
    global _KEEPING_FREED_MEMORY
    libc = _mallopt()
    if libc is None:
        return False
    mallopt, _ = libc
    _KEEPING_FREED_MEMORY = (bool(mallopt(M_MMAP_THRESHOLD, 1 << 30))
                             and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1)))
    return _KEEPING_FREED_MEMORY


def trim_freed_memory() -> None:
    """Give the heap's free memory back to the system now (glibc's malloc_trim)."""
    libc = _mallopt()
    if libc is not None:
        libc[1](0)


@contextlib.contextmanager
def returning_freed_memory():
    """Within: large blocks (32 MiB and up) are mapped afresh and unmapped on free, and
    freed heap memory goes back to the system, so work whose memory is its limit (INT8
    calibration) does not also carry what keep_freed_memory holds; the CLI's setting
    comes back after."""
    libc = _mallopt()
    if libc is not None:
        mallopt, trim = libc
        mallopt(M_MMAP_THRESHOLD, 32 << 20)
        mallopt(M_TRIM_THRESHOLD, 128 << 20)
        trim(0)
    try:
        yield
    finally:
        trim_freed_memory()
        if _KEEPING_FREED_MEMORY:
            keep_freed_memory()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorrt_status() -> tuple[bool, str]:
    """(usable, reason): TensorRT imports and a CUDA device exists."""
    try:  # the pip stubs fail here without the real libraries
        tensorrt = importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or OSError from a stub's missing .so
        return False, f"tensorrt is not importable ({type(exc).__name__}); pip install 'vrfam-rt[trt]' on a machine with an NVIDIA GPU"
    import torch
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    return True, f"TensorRT {tensorrt.__version__}"


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_model() -> dict:
    """This CPU's model name, core count and the vector/matrix flags that pick the CPU
    kernels (AVX2, AVX-512, VNNI, BF16, AMX), from /proc/cpuinfo where there is one."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"model": name, "cores": os.cpu_count(),
            "flags": [f for f in CPU_FLAGS if f in flags]}


def tensorrt_rtx_version() -> str | None:
    """The installed TensorRT-RTX's version (it builds plans without a GPU), or None."""
    return _version("tensorrt-rtx-cu12")


def openvino_status() -> tuple[bool, str]:
    """(usable, reason): OpenVINO imports, with its CPU plugin's precisions."""
    try:
        openvino = importlib.import_module("openvino")
    except ImportError:
        return False, "pip install openvino"
    caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    kinds = [c for c in ("FP32", "BF16", "INT8") if c in caps]
    return True, f"OpenVINO {openvino.__version__.split('-')[0]}, CPU: {', '.join(kinds)}"


def describe() -> dict[str, dict[str, str]]:
    import torch

    versions = {"vrfam-rt": __version__, "python": platform.python_version()}
    versions |= {lib: _version(lib) or "not installed" for lib in LIBRARIES}
    cpu = cpu_model()
    devices = {"cpu": f"{cpu['model']} ({', '.join(cpu['flags']) or 'no AVX2'}), "
                      f"{torch.get_num_threads()} torch threads"}
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices[f"cuda:{i}"] = (f"{props.name}, sm_{props.major}{props.minor}, "
                                f"{props.total_memory / 2**30:.1f} GiB")
    return {"versions": versions, "devices": devices}


@contextlib.contextmanager
def quiet_logs(logger_name: str | None = None):
    """Only errors from a library's logger for a while (None: the root logger, and the
    loggers that inherit its level, where ONNX Runtime's quantizer logs its advice)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
