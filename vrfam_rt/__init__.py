"""vrfam-rt: fast facial attribute editing with VR-FAM on StyleGAN2."""
from pathlib import Path as _Path

from vrfam_rt.version import __version__  # noqa: F401

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
