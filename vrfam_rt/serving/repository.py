"""`vrfam-rt triton-repo`: a model repository for a production Triton Inference Server.

Three stage models and the ensemble that chains them without a round trip to the
client:

    vrfam_encoder      image [3,S,S] -> wplus [L,D]
    vrfam_transformer  wplus [L,D], alphas [A] -> wplus_edited [L,D]
    vrfam_generator    wplus [L,D] -> image [3,R,R]
    vrfam_pipeline     image [3,S,S], alphas [A] -> edited [3,R,R]   (ensemble)

(batch first everywhere: max_batch_size). From TensorRT plans (`build-engines
--flavour tensorrt`: platform tensorrt_plan, one GPU instance group) or from an ONNX
export folder (onnxruntime_onnx, or the openvino backend, on CPU instances). Images
are float32 in [-1, 1] as the ONNX contract says (decoding, alignment and PNG encoding
are the client's, or `vrfam-rt serve`'s).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from vrfam_rt import manifests
from vrfam_rt.errors import VrfamError, argument
from vrfam_rt.fileio import check_replaceable, staged_dir
from vrfam_rt.serving import pbtxt

STAGES = ("encoder", "transformer", "generator")
ENSEMBLE = "vrfam_pipeline"
RUNTIMES = {"onnxruntime": {"platform": "onnxruntime_onnx"},
            "openvino": {"backend": "openvino", "default_model_filename": "model.onnx"}}


def model_name(stage: str) -> str:
    return f"vrfam_{stage}"


def _tensors(specs: list[dict]) -> list[dict]:
    """Manifest I/O entries -> Triton tensors (the batch axis left to max_batch_size)."""
    return [{"name": s["name"], "data_type": pbtxt.Enum("TYPE_FP32"),
             "dims": [int(d) for d in s["shape"][1:]]} for s in specs]


def stage_config(stage: str, spec: dict, kind: dict, max_batch: int, instances: int,
                 gpu: bool, queue_delay_us: int) -> dict:
    return {"name": model_name(stage), **kind, "max_batch_size": max_batch,
              "input": _tensors(spec["inputs"]), "output": _tensors(spec["outputs"]),
              "dynamic_batching": {"max_queue_delay_microseconds": queue_delay_us},
              "instance_group": [{"count": instances,
                                  "kind": pbtxt.Enum("KIND_GPU" if gpu else "KIND_CPU")}]}


def ensemble_config(specs: dict[str, dict], max_batch: int) -> dict:
    """image, alphas -> edited through the three stage models."""
    enc, tra, gen = (specs[s] for s in STAGES)
    image, alphas = enc["inputs"][0], tra["inputs"][1]
    wplus, edited_w, out = enc["outputs"][0]["name"], tra["outputs"][0]["name"], gen["outputs"][0]

    def step(stage, inputs, outputs):
        return {"model_name": model_name(stage), "model_version": -1,
                "input_map": [{"key": k, "value": v} for k, v in inputs.items()],
                "output_map": [{"key": k, "value": v} for k, v in outputs.items()]}
    return {
        "name": ENSEMBLE, "platform": "ensemble", "max_batch_size": max_batch,
        "input": _tensors([image, alphas]),
        "output": _tensors([{**out, "name": "edited"}]),
        "ensemble_scheduling": {"step": [
            step("encoder", {image["name"]: image["name"]}, {wplus: "wplus"}),
            step("transformer", {tra["inputs"][0]["name"]: "wplus", alphas["name"]: alphas["name"]},
                 {edited_w: "wplus_edited"}),
            step("generator", {gen["inputs"][0]["name"]: "wplus_edited"}, {out["name"]: "edited"}),
        ]},
    }


def _source(engines: Path | None, onnx: Path | None, runtime: str):
    """(kind of model per stage, stage specs, files per stage, batch limit, gpu)."""
    if engines is not None:
        held = manifests.read(engines, "engines")
        if held.get("flavour") == "rtx":
            raise VrfamError(f"{argument('engines', engines)} holds TensorRT-RTX plans, which "
                             "Triton's TensorRT backend cannot load; build plans with `vrfam-rt "
                             "build-engines --flavour tensorrt` on the serving GPU's kind, or "
                             "give the ONNX export (`onnx=PATH`)")
        files = {s: [(engines / e["plan"], "model.plan")] for s, e in held["files"].items()}
        limits = [e["profile"][e["inputs"][0]["name"]]["max"][0] for e in held["files"].values()]
        return {"platform": "tensorrt_plan"}, held["files"], files, min(limits), True
    held = manifests.read(onnx, "export")
    files = {}
    for stage, spec in held["files"].items():   # the graph, and its external data if any
        files[stage] = [(onnx / spec["file"], "model.onnx")] + [
            (onnx / name, name) for name in sorted(spec.get("sha256", {})) if name != spec["file"]]
    return dict(RUNTIMES[runtime]), held["files"], files, held.get("max_batch") or 64, False


def write_triton_repo(out: Path, engines: Path | None = None, onnx: Path | None = None,
                      max_batch: int | None = None, instances: int = 1,
                      runtime: str = "onnxruntime", queue_delay_us: int = 1000,
                      force: bool = False) -> dict[str, dict]:
    """Write the repository (staged, then renamed into place); return the configs.
    `force` replaces a repository this function wrote at `out` before (and nothing else)."""
    if (engines is None) == (onnx is None):
        raise VrfamError("give exactly one of `engines=PATH` or `onnx=PATH`")
    out = Path(out)
    check_replaceable(out, "model repository", force)
    kind, specs, files, limit, gpu = _source(engines, onnx, runtime)
    missing = [s for s in STAGES if s not in specs]
    if missing:
        where = engines or onnx
        raise VrfamError(f"{where} holds no {missing[0]} model; the pipeline needs all three "
                         f"stages (it holds {', '.join(specs)})")
    max_batch = max_batch or min(limit, 8)
    if max_batch > limit:
        raise VrfamError(f"{argument('max_batch', max_batch)} exceeds what the models take "
                         f"({limit}); "
                         "rebuild or re-export them with a larger max batch")
    for stage in STAGES:
        for path, _ in files[stage]:
            if not path.is_file():
                raise VrfamError(f"{path} is missing; re-run the command that made it")
    configs = {model_name(s): stage_config(s, specs[s], kind, max_batch, instances, gpu,
                                           queue_delay_us) for s in STAGES}
    configs[ENSEMBLE] = ensemble_config(specs, max_batch)
    with staged_dir(out, "model repository", "vrfam-rt triton-repo", force) as tmp:
        for name, config in configs.items():
            (tmp / name / "1").mkdir(parents=True)
            (tmp / name / "config.pbtxt").write_text(pbtxt.dumps(config) + "\n")
        for stage in STAGES:
            for path, name in files[stage]:
                shutil.copyfile(path, tmp / model_name(stage) / "1" / name)
    return configs
