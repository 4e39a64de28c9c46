"""Model suites: one bundle per editing method over one generator, and the default one.

A suite is a folder with `suite.json` and one bundle folder per method (`vrfam`,
`interfacegan`, `interfacegan-conditional`, `e4e-linear`). The first bundle holds its
weight files; the others name the files they share with it by relative path, so the
four methods of the default suite cost little more than one bundle.

The default suite ships in the package (`vrfam_rt/assets/default/`), trained on the
procedural faces by `scripts/build_default_bundle.sh`; its `vrfam` bundle is what
commands use when no --bundle or --config is given, and `faces/example.png` is the
demo face (`make demo`).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from vrfam_rt.errors import VrfamError

METHODS = ("vrfam", "interfacegan", "interfacegan-conditional", "e4e-linear")
MANIFEST = "suite.json"
BUILD_HINT = "build it with scripts/build_default_bundle.sh (INSTALL=1), or give --bundle B"


def default_suite() -> Path:
    """The shipped suite folder (inside the installed package)."""
    return Path(str(resources.files("vrfam_rt").joinpath("assets", "default")))


def is_suite(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def member(suite: Path | None = None, method: str = "vrfam") -> Path:
    """The bundle folder of `method` in `suite` (default: the shipped suite)."""
    if method not in METHODS:
        raise VrfamError(f"method {method!r} is not one of {', '.join(METHODS)}")
    where = Path(suite) if suite is not None else default_suite()
    if not is_suite(where):
        what = "the default model suite is not installed" if suite is None else \
            f"{where} is not a model suite ({MANIFEST} not found)"
        raise VrfamError(f"{what}; {BUILD_HINT}")
    path = where / method
    if not (path / "bundle.json").is_file():
        raise VrfamError(f"suite {where} has no {method} bundle; {BUILD_HINT}")
    return path


def resolve(path: Path | None, method: str | None = None) -> Path:
    """The bundle folder a --bundle value names: a bundle as given, or a suite's member
    (`method`, default vrfam); no value means the shipped suite."""
    if path is None or is_suite(path):
        return member(path, method or "vrfam")
    if method:
        raise VrfamError(f"--method picks a bundle of a model suite; {path} is a single "
                         "bundle (leave out --method)")
    return Path(path)


PHOTO_NOTE = ("the default model is trained on synthetic 64-px faces, so a photo comes out "
              "as a synthetic face; to edit photos, import the public FFHQ weights "
              "(README, \"Editing photos\") and pass --bundle")


def trained_on_synthetic_faces(bundle) -> bool:
    """Whether the bundle's generator was trained on the procedural faces (as the
    shipped default model's is), by its provenance."""
    return _synthetic_provenance(bundle.provenance)


def _synthetic_provenance(provenance: dict) -> bool:
    """A bundle's provenance (as in bundle.json) says its generator learned procedural faces."""
    generator = provenance.get("generator") or {}
    return "--data synth" in str(generator.get("command", ""))


def synthetic_note(bundle) -> str | None:
    """The line to print when such a bundle has edited real photos, else None."""
    return PHOTO_NOTE if trained_on_synthetic_faces(bundle) else None


def describe_default() -> dict:
    """What `vrfam-rt info` says of the shipped default model (read from the manifests,
    no weights loaded): where it is, its methods, resolution, attributes, training data."""
    from vrfam_rt import manifests

    try:
        path = member(None, "vrfam")
    except VrfamError as exc:
        return {"status": str(exc)}
    bundle = manifests.read(path, "bundle")
    config = bundle["config"]
    suite = suite_manifest(default_suite())
    return {
        "path": str(path),
        "methods": ", ".join(suite.get("methods", {})) + " (--method; default vrfam)",
        "method": "vrfam (" + "/".join(sorted(set(bundle["transformer"]["methods"].values())))
                  + " latent transformer, variance-reduced encoder)",
        "resolution": f"{config['generator']['size']} px generator, "
                      f"{config['encoder']['input_size']} px encoder input",
        "attributes": ", ".join(bundle["attributes"]),
        "trained on": ("procedural synthetic faces (scripts/build_default_bundle.sh); for "
                       "photos import FFHQ weights (README, \"Editing photos\")")
        if _synthetic_provenance(bundle.get("provenance", {})) else "see its bundle.json",
    }


def suite_manifest(suite: Path) -> dict:
    """A suite folder's suite.json."""
    import json

    return json.loads((Path(suite) / MANIFEST).read_text())
