"""Assembling a model suite (vrfam_rt.suite) from trained bundles: `vrfam-rt synth suite`."""
from __future__ import annotations

from pathlib import Path

from vrfam_rt.bundle import Bundle
from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import staged_dir, write_json_atomic
from vrfam_rt.images import save_png, to_pil
from vrfam_rt.suite import MANIFEST, METHODS
from vrfam_rt.training.render import render, sample_params

KEEP = ("generator", "encoder", "classifier", "transformer")   # what an edit needs


def pick_example(seed: int = 7, size: int = 128, tries: int = 64):
    """A render for the demo: the first face of `seed` that neither smiles nor wears
    glasses, so that `edit --attr Smiling` shows a change. Returns (image [3,S,S], params)."""
    params = sample_params(tries, seed=seed)
    plain = (params.attribute("Smiling") == 0) & (params.attribute("Eyeglasses") == 0)
    if not plain.any():
        raise VrfamError(f"no plain face among {tries} renders of seed {seed}")
    index = int(plain.nonzero()[0, 0])
    return render(params[index:index + 1], size)[0], params[index:index + 1]


def write_suite(out: Path, bundles: dict[str, Path], notes: dict) -> Path:
    """Assemble a suite at `out` from one trained bundle per method (keeping only what
    an edit needs), with the demo face; it appears whole or not at all."""

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
        write_json_atomic(tmp / MANIFEST, {"format": "vrfam-rt-suite", "methods": members,
                    "example_face": {"file": "faces/example.png", "render_seed": 7,
                                     "attributes": params.attributes[0].tolist()},
                    **notes})
    return out
