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
| vrfam_rt.runtime        | vrfam_rt/runtime.py  | the one bridge: build on demand, cached |
| vrfam_rt.pipeline       | vrfam_rt/pipeline.py | run time: EditPipeline                  |
| vrfam_rt.benchmarks     | benchmarks/          | bench, profile, roofline, evaluation    |
| vrfam_rt.cli            | vrfam_rt/cli/        | the `vrfam-rt` command line             |

The stage folders sit at the top of the checkout (the design card's layout) and are
subpackages of vrfam_rt: setup.cfg maps them (package_dir) for installs, and from a
checkout that is not installed (PYTHONPATH=.) the path below adds them, so
`python -m vrfam_rt` and `import vrfam_rt.export.lowering` work either way. (Static
checkers do not follow package_dir: mypy and pyright see these modules by their folder
names only.) Run-time code reaches
build-time code only through vrfam_rt.runtime (tests/test_structure.py checks it).

    from vrfam_rt import EditPipeline
    pipe = EditPipeline.from_bundle(None, backend="ort")
    [edited] = pipe("face.png", {"Smiling": 1.0})
"""
from pathlib import Path as _Path

from vrfam_rt.version import __version__

__all__ = ["Bundle", "EditPipeline", "__version__"]

# In a source checkout that is not installed (PYTHONPATH=.), the stage folders beside
# this package (training/, export/, ...) are its subpackages, as setup.cfg maps them.
_root = _Path(__file__).resolve().parent.parent
if (_root / "setup.cfg").is_file() and (_root / "training" / "__init__.py").is_file():
    __path__.append(str(_root))


def __getattr__(name):
    if name == "Bundle":
        from vrfam_rt.bundle import Bundle
        return Bundle
    if name == "EditPipeline":
        from vrfam_rt.pipeline import EditPipeline
        return EditPipeline
    raise AttributeError(f"module 'vrfam_rt' has no attribute {name!r}")
