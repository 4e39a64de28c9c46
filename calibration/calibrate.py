"""`vrfam-rt calibrate`: INT8 Q/DQ graphs for a bundle, with their accuracy and CPU speed.

Target `trt` graphs compute their unquantized part in float16 (what TensorRT-RTX can
build for Turing); targets `cpu` and `openvino` in float32 (ONNX Runtime's x86 kernels;
OpenVINO runs it in bf16 where the CPU has it).

Accuracy is measured on held-out generator samples through ONNX Runtime:
- encoder: W+ error relative to the input-dependent part of W+ (W+ minus its mean
  over the inputs; with random weights most of W+ is a constant offset that would
  flatter the error; the error relative to all of W+ is recorded beside it), the PSNR of the images the FP32 generator renders from INT8
  vs FP32 codes, and how often the latent classifier's attribute decisions agree;
- generator: PSNR of the INT8 vs the FP32 image for the same W+.
Latency is the median CPU time of one batch-1 encoder call, INT8 vs FP32, on the
target's runtime (OpenVINO for `openvino`, else ONNX Runtime).
"""
from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from vrfam_rt.backends.ort import OrtBackend
from vrfam_rt.bundle import Bundle
from vrfam_rt.calibration.data import folder_images, generator_samples
from vrfam_rt.calibration.quantize import (METHODS, PLAN_VERSION, autocast_fp16, check_symmetric_int8,
                                           quantize_component)
from vrfam_rt.environment import returning_freed_memory, trim_freed_memory
from vrfam_rt.errors import VrfamError
from vrfam_rt.export.compat import check_trt_compatible
from vrfam_rt.export.parity import psnr
from vrfam_rt import manifests
from vrfam_rt.export.lowering import export_bundle, library_versions
from vrfam_rt.fileio import check_replaceable, sha256_file, staged_dir, writable_folder

CALIBRATED = ("encoder", "generator")


def calibrate(bundle: Bundle, out: Path, components=("encoder",), target: str = "trt",
              method: str = "auto", images: Path | None = None, samples: int | None = None,
              seed: int = 0, eval_count: int = 4, force: bool = False,
              progress: Callable[[str], None] | None = None) -> dict:
    """Write `out/int8-<target>/` (Q/DQ ONNX files + manifest with metrics); return the manifest.

    The FP32 graphs quantized and measured against are `out/fp32/` where it holds this
    bundle's export of these components (as a runtime cache folder does), else a fresh
    export (an export costs about as much as the calibration of a small bundle)."""
    out = Path(out)
    folder = out / f"int8-{target}"
    bad = [c for c in components if c not in CALIBRATED]
    if bad:
        raise VrfamError(f"component {bad[0]!r}: INT8 calibration covers {', '.join(CALIBRATED)}")
    if (images is None) == (samples is None):
        raise VrfamError("give exactly one of `images=DIR` or `samples=N`")
    if method not in ("auto", *METHODS):
        raise VrfamError(f"unknown calibration method {method!r}; choose from auto, "
                         f"{', '.join(METHODS)}")
    writable_folder(out)
    check_replaceable(folder, "INT8 export", force)
    check_memory(bundle, components)
    with returning_freed_memory():
        return _calibrate(bundle, folder, components, target, method, images, samples, seed,
                          eval_count, progress, reference_export(out / "fp32", bundle, components),
                          force)


def reference_export(folder: Path, bundle: Bundle, components) -> Path | None:
    """`folder` if it holds the bundle's fp32 export of every one of `components`."""
    held = manifests.read(folder, "export", missing_ok=True)
    if held.get("bundle_digest") != bundle.digest or held.get("precision") != "fp32":
        return None
    if not all(c in held.get("files", {}) and (folder / held["files"][c]["file"]).is_file()
               for c in components):
        return None
    return folder


def check_memory(bundle: Bundle, components, available: int | None = None) -> None:
    """Refuse, before any work, a calibration that would not fit in the memory available
    now (calibration/memory.py: counted per network, one sample at a time)."""
    from vrfam_rt.calibration.memory import available_bytes, bytes_needed

    available = available_bytes() if available is None else available
    if available is None:
        return
    need = bytes_needed(bundle, components)
    component = max(need, key=need.get)
    if need[component] > available:
        raise VrfamError(f"calibrating the {bundle.config.name} {component} needs about "
                         f"{need[component] / 2**30:.1f} GiB more memory and "
                         f"{available / 2**30:.1f} GiB is available; close other programs, "
                         "or calibrate on a machine with more memory (the INT8 graphs then "
                         "copy over with the cache folder)")


def _calibrate(bundle: Bundle, folder: Path, components, target: str, method: str,
               images: Path | None, samples: int | None, seed: int, eval_count: int,
               progress: Callable[[str], None] | None, reference: Path | None,
               force: bool) -> dict:
    say = progress or (lambda step: None)
    say("calibration inputs")
    size = bundle.config.encoder.input_size
    if images is not None:
        cal_images = folder_images(images, size)
        cal_wplus = bundle.encoder(cal_images).detach() if "generator" in components else None
        source = {"images": str(images), "count": len(cal_images)}
    else:
        cal_images, cal_wplus = generator_samples(bundle, samples, seed, batch=1)
        source = {"generator_samples": samples, "seed": seed}
    eval_images, eval_wplus = generator_samples(bundle, eval_count, seed + 1, batch=1)

    with staged_dir(folder, "INT8 export", "vrfam-rt calibrate", force) as tmp:
        if reference is None:
            say("FP32 reference graphs")
            export_bundle(bundle, tmp / "reference", ("fp32",), components)
        fp32_dir = reference or tmp / "reference" / "fp32"
        reference = manifests.read(fp32_dir, "export")
        files, methods = {}, {}
        for component in components:
            say(f"quantizing {component}")
            data = {"image": cal_images} if component == "encoder" else {"wplus": cal_wplus}
            path = tmp / f"{component}.onnx"
            methods[component] = quantize_component(component, fp32_dir / f"{component}.onnx",
                                                    path, data, target, method)
            trim_freed_memory()             # one network's calibration buffers, returned
            if target == "trt":
                import onnx
                model = autocast_fp16(onnx.load(str(path)))
                onnx.save(model, str(path))
                check_symmetric_int8(model, str(folder / path.name))
                check_trt_compatible(path, str(folder / path.name))
            spec = reference["files"][component]
            files[component] = {"file": path.name, "sha256": {path.name: sha256_file(path)},
                                "bytes": path.stat().st_size, "inputs": spec["inputs"],
                                "outputs": spec["outputs"]}
        manifest = manifests.write(tmp, "export", {
                    "bundle_digest": bundle.digest, "config": bundle.config.to_dict(),
                    "precision": "int8", "target": target, "method": methods,
                    "plan": PLAN_VERSION if method == "auto" else None,
                    "high_precision_dtype": "float16" if target == "trt" else "float32",
                    "calibration": source, "opset": reference["opset"],
                    "max_batch": reference["max_batch"], "io_dtype": "float32",
                    "versions": library_versions(), "attributes": list(bundle.attributes),
                    "files": files})
        say("measuring INT8 vs FP32")
        manifest["metrics"] = int8_report(bundle, fp32_dir, tmp, eval_images, eval_wplus, target)
        manifest["metrics"]["eval_samples"] = eval_count
        manifests.write(tmp, "export", manifest)
        shutil.rmtree(tmp / "reference", ignore_errors=True)
    return manifest


def _median_ms(fn, *inputs, runs: int = 3) -> float:
    fn(*inputs)                                            # warm-up (session creation)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(*inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _one_by_one(stage, inputs: torch.Tensor) -> torch.Tensor:
    """A stage over a batch, one sample per call (bounded memory at 1024 px)."""
    return torch.cat([stage(x) for x in inputs.split(1)])


def int8_report(bundle: Bundle, fp32_dir: Path, int8_dir: Path, eval_images: torch.Tensor,
                eval_wplus: torch.Tensor, target: str = "cpu") -> dict:
    # fresh sessions per network, dropped after it: the FP32 and INT8 sessions of both
    # networks at once would hold four copies of the weights (ffhq-1024: +1 GiB at peak)
    report = {}
    held = manifests.read(int8_dir, "export")["files"]
    with torch.no_grad():
        if "encoder" in held:
            fp32, int8 = OrtBackend(fp32_dir), OrtBackend(int8_dir)
            w32 = _one_by_one(fp32.encoder, eval_images)
            w8 = _one_by_one(int8.encoder, eval_images)
            centred = w32 - w32.mean(0, keepdim=True)
            row = {"wplus_rel_err": ((w8 - w32).norm() / centred.norm()).item(),
                   "wplus_rel_err_total": ((w8 - w32).norm() / w32.norm()).item(),
                   "image_psnr_db": psnr(_one_by_one(bundle.generator, w32),
                                         _one_by_one(bundle.generator, w8))}
            if "classifier" in bundle.modules:
                agree = (bundle.classifier(w8) > 0) == (bundle.classifier(w32) > 0)
                row["attribute_agreement"] = agree.float().mean().item()
            if target == "openvino":       # timed as the openvino backend runs them
                from vrfam_rt.backends.openvino import OpenVinoBackend
                del fp32, int8
                fp32, int8 = OpenVinoBackend(fp32_dir, "fp32"), OpenVinoBackend(int8_dir, "int8")
            one = eval_images[:1]
            row["fp32_ms"] = _median_ms(fp32.encoder, one)
            row["int8_ms"] = _median_ms(int8.encoder, one)
            row["speedup"] = row["fp32_ms"] / row["int8_ms"]
            report["encoder"] = row
            del fp32, int8
            trim_freed_memory()
        if "generator" in held:
            fp32, int8 = OrtBackend(fp32_dir), OrtBackend(int8_dir)
            report["generator"] = {"image_psnr_db": psnr(_one_by_one(fp32.generator, eval_wplus),
                                                         _one_by_one(int8.generator, eval_wplus))}
    return report
