"""The build-time commands: `export` (ONNX), `build-engines` (TensorRT plans), `calibrate` (INT8)."""
from __future__ import annotations

from pathlib import Path

import click

from vrfam_rt.cli.common import (FILE, ONNX_HELP, OUT_DIR, Progress, bundle_from,
                                 bundle_options, json_option, many_option, onnx_folders, say,
                                 table, write_json)
from vrfam_rt.errors import VrfamError
from vrfam_rt.engines.rtx import COMPUTE_CAPABILITIES as RTX_TARGETS


@click.command()
@bundle_options("export")
@click.option("--out", required=True, type=OUT_DIR, help="Folder for fp32/, fp16/ ...")
@many_option("--precision", "precisions", ("fp32", "fp16"), ("fp32", "fp16"),
             "Precisions to export.")
@many_option("--components", "components", ("encoder", "transformer", "generator"),
             ("encoder", "transformer", "generator"), "Networks to export.")
@click.option("--max-batch", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="Largest batch the graphs accept (the batch axis is dynamic).")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(9, 20),
              help="ONNX opset of the graphs (TensorRT 10 parses 9 to 20).")
@click.option("--verify", is_flag=True,
              help="Compare every graph with eager PyTorch through ONNX Runtime (batch 1 and 3) "
              "and emulate FP16 on the CPU; print both tables.")
@json_option("Write manifests and verification results as JSON.")
@click.option("--force", is_flag=True, help="Replace existing precision folders in --out.")
def export(bundle_path, method, config, seed, out, precisions, components, max_batch, opset, verify,
           json_path, force):
    """Bundle -> ONNX files (encoder, fused transformer, generator) per precision.

    Example: vrfam-rt export --config tiny --out onnx/tiny --verify
    """
    from vrfam_rt.export.lowering import check_export, export_bundle

    bundle = bundle_from(bundle_path, config, seed, method)
    check_export(bundle, Path(out), precisions, components, max_batch, force)
    bar = Progress(len(precisions) * len(components), "exporting", "graphs", "folders")
    started = []

    def progress(step):       # called as each file starts; the bar counts finished files
        if started:
            bar.update(1, step)
        if started and started[-1].split("/")[0] != step.split("/")[0]:
            bar.wrote(Path(out) / started[-1].split("/")[0])
        started.append(step)

    manifests = export_bundle(bundle, out, precisions, components, opset=opset,
                              max_batch=max_batch, force=force, progress=progress)
    bar.update(1)
    rows = [{"precision": p, "component": c, "MB": e["bytes"] / 1e6,
             "seconds": e["export_seconds"], "fp32_nodes": len(e["fp32_nodes"])}
            for p, m in manifests.items() for c, e in m["files"].items()]
    click.echo(table(rows, [("precision", "precision", ""), ("file", "component", ""),
                             ("MB", "MB", ".1f"), ("export s", "seconds", ".1f"),
                             ("fp32 nodes", "fp32_nodes", "d")]))
    click.echo(f"wrote {', '.join(str(Path(out) / p) for p in manifests)}")
    results = {"manifests": manifests}
    if verify:
        results |= _verify(bundle, out, manifests, components)
    write_json(json_path, results)
    if verify and not all(r.get("ok", True) for r in results["parity"]):
        raise VrfamError("parity check failed: an FP32 graph differs from eager PyTorch "
                         "beyond its limit (see the table)")


def _verify(bundle, out, manifests, components) -> dict:
    from vrfam_rt.export.fp16 import fp16_report
    from vrfam_rt.export.parity import parity

    rows = [r for p in manifests for r in parity(bundle, Path(out) / p)]
    for r in rows:
        r["verdict"] = {True: "ok", False: "FAIL"}.get(r.get("ok"), "")
    click.echo("\nparity: ONNX Runtime vs eager PyTorch")
    click.echo(table(rows, [("precision", "precision", ""), ("file", "component", ""),
                             ("batch", "batch", "d"), ("max abs", "max_abs", ".2e"),
                             ("max rel", "max_rel", ".2e"), ("limit", "limit", ""),
                             ("", "verdict", "")]))
    emulated = fp16_report(bundle, components)
    fp16_rows = [{"component": c} | r for c, r in emulated.items()]
    click.echo("\nFP16 by emulation (float16 weights and activations) vs FP32, batch 2")
    click.echo(table(fp16_rows, [("file", "component", ""), ("finite", "finite", ""),
                                  ("max abs", "max_abs", ".2e"), ("max rel", "max_rel", ".2e"),
                                  ("rel L2", "rel_l2", ".2e"), ("PSNR dB", "psnr_db", ".1f")]))
    return {"parity": rows, "fp16_emulation": emulated}


@click.command("build-engines")
@click.option("--onnx", "onnx_path", required=True, type=FILE,
              help=f"The graphs to build: {ONNX_HELP} (an export holding several "
              "precisions needs --precision).")
@click.option("--precision", type=click.Choice(["fp16", "fp32", "int8-trt"]),
              help="Which folder of an --onnx export to build [default: its only one, or "
              "fp16].")
@click.option("--out", required=True, type=OUT_DIR, help="Folder for the plans and manifest.")
@click.option("--flavour", default="auto", show_default=True,
              type=click.Choice(["auto", "tensorrt", "rtx"]),
              help="tensorrt: TensorRT 10/11 on the local GPU; rtx: TensorRT-RTX, ahead of "
              "time, no GPU needed; auto: tensorrt when it and a GPU are here, else rtx.")
@many_option("--compute-capability", "compute_capabilities", RTX_TARGETS, (),
             "TensorRT-RTX target GPU generations (7.5 = RTX 2080 Ti) [default: all of "
             "them].")
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(1, 1024),
              help="Largest batch the plans accept.")
@click.option("--opt-batch", type=click.IntRange(1, 1024),
              help="Batch size the kernels are tuned for (default: --max-batch).")
@click.option("--workspace", "workspace_gib", default=8.0, show_default=True,
              type=click.FloatRange(min=0.0625),
              help="Builder workspace (scratch memory) limit in GiB.")
@click.option("--opt-level", default=3, show_default=True, type=click.IntRange(0, 5),
              help="TensorRT builder optimization level.")
@click.option("--timing-cache", type=FILE, help="Timing cache file (default: OUT/timing.cache; "
              "TensorRT only).")
@click.option("--refittable", is_flag=True, help="Build plans whose weights can be refitted.")
def build_engines_cmd(onnx_path, precision, out, flavour, compute_capabilities, max_batch, opt_batch,
                      workspace_gib, opt_level, timing_cache, refittable):
    """ONNX -> TensorRT or TensorRT-RTX plans (strongly typed, dynamic batch, cached).

    Example: vrfam-rt build-engines --onnx onnx/ffhq/fp16 --out engines/ffhq-fp16
    --flavour rtx --compute-capability 7.5
    """
    from vrfam_rt.engines.build import BuildOptions, build_engines, choose_target

    folders = onnx_folders(onnx_path)
    if precision is None and len(folders) > 1:
        precision = "fp16" if "fp16" in folders else None
        if precision is None:
            raise click.UsageError(f"--onnx {onnx_path} holds {', '.join(folders)}; pick one "
                                   "with --precision")
    if precision is not None and precision not in folders:
        raise VrfamError(f"--onnx {onnx_path} holds no {precision} graphs (it holds "
                         f"{', '.join(folders)})")
    onnx_dir = folders[precision] if precision else next(iter(folders.values()))
    options = BuildOptions(workspace_gib=workspace_gib, opt_level=opt_level, refittable=refittable)
    target = choose_target(flavour, compute_capabilities)   # one line when nothing can build
    say(f"building with {target.describe()}")

    def progress(component, cached):
        say(f"{component}: {'cached plan reused' if cached else 'building'}")

    manifest = build_engines(onnx_dir, out, max_batch, opt_batch, options, timing_cache,
                             target=target, progress=progress)
    rows = [{"file": e["plan"], "MB": e["bytes"] / 1e6, "s": e["build_seconds"]}
            for e in manifest["files"].values()]
    click.echo(table(rows, [("plan", "file", ""), ("MB", "MB", ".1f"),
                             ("build s", "s", ".1f")]))
    click.echo(f"wrote {out}: {target.describe()}")


@click.command()
@bundle_options("calibrate", seed_help="Seed for --config and --samples.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of calibration photos (preprocessed as for editing).")
@click.option("--samples", type=click.IntRange(1, 100000),
              help="Calibrate on N samples of the bundle's generator instead.")
@click.option("--out", required=True, type=OUT_DIR, help="Folder for int8-<target>/.")
@many_option("--components", "components", ("encoder", "generator"), ("encoder",),
             "Networks to quantize (the transformer stays FP32).")
@click.option("--calibration", default="auto", show_default=True,
              type=click.Choice(["auto", "entropy", "max", "percentile"]),
              help="How activation ranges are chosen: entropy (KL), max (min-max) or "
              "percentile (99.999%); auto: max, the generator's style, upsampling, blur and "
              "toRGB layers left in float.")
@click.option("--target", default="trt", show_default=True,
              type=click.Choice(["trt", "cpu", "openvino"]),
              help="trt: symmetric int8 Q/DQ for engines; cpu: u8 x s8 for ONNX Runtime; "
              "openvino: s8 x s8 encoder, u8 x s8 generator, for OpenVINO.")
@click.option("--eval-samples", default=4, show_default=True, type=click.IntRange(1, 1024),
              help="Held-out generator samples for the INT8 vs FP32 figures.")
@click.option("--force", is_flag=True, help="Replace an existing int8-<target>/ folder.")
def calibrate(bundle_path, method, config, seed, images, samples, out, components, calibration,
              target, eval_samples, force):
    """INT8 Q/DQ ONNX from calibration images, with accuracy and CPU speed vs FP32.

    Example: vrfam-rt calibrate --config tiny --samples 32 --out onnx/tiny --target cpu
    """
    from vrfam_rt.calibration.calibrate import calibrate as run_calibration

    if (images is None) == (samples is None):
        raise click.UsageError("give exactly one of --images DIR or --samples N")
    bundle = bundle_from(bundle_path, config, seed, method)
    manifest = run_calibration(bundle, out, components, target, calibration, images, samples, seed,
                               eval_samples, force,
                               progress=lambda step: say(f"{step} ..."))
    rows = [{"component": c} | r for c, r in manifest["metrics"].items() if isinstance(r, dict)]
    methods = ", ".join(f"{c} {m}" for c, m in manifest["method"].items())
    timer = "OpenVINO" if target == "openvino" else "ONNX Runtime"
    click.echo(f"INT8 ({target} target; calibration: {methods}) vs FP32, {eval_samples} "
               f"held-out samples: accuracy through ONNX Runtime, times through {timer}")
    click.echo(table(rows, [("file", "component", ""), ("W+ rel err", "wplus_rel_err", ".3f"),
                             ("PSNR dB", "image_psnr_db", ".1f"),
                             ("attr agree", "attribute_agreement", ".3f"),
                             ("fp32 ms", "fp32_ms", ".0f"), ("int8 ms", "int8_ms", ".0f"),
                             ("speedup", "speedup", ".2f")]))
    click.echo(f"wrote {Path(out) / f'int8-{target}'}")


COMMANDS = (export, build_engines_cmd, calibrate)
