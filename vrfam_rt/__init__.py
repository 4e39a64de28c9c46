"""vrfam-rt: fast facial attribute editing with VR-FAM on StyleGAN2.

The data flow, image -> align -> encoder -> transformer -> generator -> image, and the
split between build time (making graphs and plans) and run time (running them):

| module                  | folder in a checkout | what it is                              |
| vrfam_rt.models         | vrfam_rt/models/     | the eager PyTorch networks              |
| vrfam_rt.bundle         | vrfam_rt/bundle.py   | the unit every stage passes on          |
| vrfam_rt.contract       | vrfam_rt/contract.py | the ONNX I/O contract of the 3 stages   |
| vrfam_rt.manifests      | vrfam_rt/manifests.py| the bundle/export/engines manifests     |
| vrfam_rt.training       | training/            | build time: trainers, renderer, suites  |
| vrfam_rt.export         | export/              | build time: bundle -> ONNX              |
| vrfam_rt.calibration    | calibration/         | build time: INT8 Q/DQ graphs            |
| vrfam_rt.engines        | engines/             | build time: TensorRT / TensorRT-RTX     |
| vrfam_rt.backends       | vrfam_rt/backends/   | run time: eager, ort, trt stage calls   |
| vrfam_rt.on_demand        | vrfam_rt/on_demand.py  | the one bridge: build on demand, cached |
| vrfam_rt.pipeline       | vrfam_rt/pipeline.py | run time: EditPipeline                  |
| vrfam_rt.inversion      | vrfam_rt/inversion.py| run time: faces inverted once, saved    |
| vrfam_rt.benchmarks     | benchmarks/          | bench, profile, roofline, evaluation    |
| vrfam_rt.cli            | vrfam_rt/cli/        | the `vrfam-rt` command line             |

The stage folders sit at the top of the checkout (the design card's layout) and are
subpackages of vrfam_rt: setup.cfg maps them (package_dir) for installs and wheels, and
in a checkout a relative symlink per folder (vrfam_rt/export -> ../export, ...) puts
them where every tool looks, so `python -m vrfam_rt` with PYTHONPATH=., mypy, pyright
and editors resolve `vrfam_rt.export.lowering` to export/lowering.py without knowing
about package_dir (grep -r and git see each file once: neither follows the links).
Run-time code reaches build-time code only through vrfam_rt.on_demand
(tests/test_structure.py checks it).

    from vrfam_rt import EditPipeline
    pipe = EditPipeline.from_bundle(None, backend="ort")
    [edited] = pipe("face.png", {"Smiling": 1.0})
"""
from vrfam_rt.version import __version__

__all__ = ["Bundle", "EditPipeline", "__version__"]


def __getattr__(name):
    if name == "Bundle":
        from vrfam_rt.bundle import Bundle
        return Bundle
    if name == "EditPipeline":
        from vrfam_rt.pipeline import EditPipeline
        return EditPipeline
    raise AttributeError(f"module 'vrfam_rt' has no attribute {name!r}")
