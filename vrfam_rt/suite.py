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

import json
from importlib import resources
from pathlib import Path

from vrfam_rt.errors import VrfamError

METHODS = ("vrfam", "interfacegan", "interfacegan-conditional", "e4e-linear")
MANIFEST = "suite.json"
KEEP = ("generator", "encoder", "classifier", "transformer")   # what an edit needs
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


def pick_example(seed: int = 7, size: int = 128, tries: int = 64):
    """A render for the demo: the first face of `seed` that neither smiles nor wears
    glasses, so that `edit --attr Smiling` shows a change. Returns (image [3,S,S], params)."""
    from vrfam_rt.training.render import render, sample_params

    params = sample_params(tries, seed=seed)
    plain = (params.attribute("Smiling") == 0) & (params.attribute("Eyeglasses") == 0)
    if not plain.any():
        raise VrfamError(f"no plain face among {tries} renders of seed {seed}")
    index = int(plain.nonzero()[0, 0])
    return render(params[index:index + 1], size)[0], params[index:index + 1]


def write_suite(out: Path, bundles: dict[str, Path], notes: dict) -> Path:
    """Assemble a suite at `out` from one trained bundle per method (keeping only what
    an edit needs), with the demo face; it appears whole or not at all."""
    from vrfam_rt.bundle import Bundle
    from vrfam_rt.fileio import staged_dir
    from vrfam_rt.images import save_png, to_pil

    if out.exists():
        raise VrfamError(f"{out} already exists; remove it first")
    missing = [m for m in METHODS if m not in bundles]
    if missing:
        raise VrfamError(f"a suite needs a bundle for every method; missing {', '.join(missing)}")
    members = {}
    with staged_dir(out) as tmp:
        for method in METHODS:
            source = Bundle.load(bundles[method])
            keep = {k: v for k, v in source.modules.items() if k in KEEP}
            slim = Bundle(source.config, keep, {k: source.provenance.get(k) for k in keep})
            share = tmp / METHODS[0] if method != METHODS[0] else None
            slim.save(tmp / method, share=share)
            members[method] = {"source": str(bundles[method]),
                               "methods": slim.transformer_methods}
        face, params = pick_example()
        save_png(to_pil(face), tmp / "faces" / "example.png")
        manifest = {"format": "vrfam-rt-suite", "methods": members,
                    "example_face": {"file": "faces/example.png", "render_seed": 7,
                                     "attributes": params.attributes[0].tolist()},
                    **notes}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out
