"""Assembling a model suite (vrfam_rt.suite) from trained bundles: `vrfam-rt synth suite`."""
from __future__ import annotations

from pathlib import Path

from vrfam_rt.bundle import Bundle
from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import check_replaceable, staged_dir, write_json_atomic
from vrfam_rt.images import save_png, to_pil
from vrfam_rt.suite import MANIFEST, METHODS, suite_manifest
from vrfam_rt.synthetic.faces import render, sample_params

KEEP = ("generator", "encoder", "classifier", "transformer")   # what an edit needs


def pick_example(bundle: Bundle, seed: int = 7, size: int = 128, tries: int = 512) -> dict:
    """The demo face, chosen by the judge's reading, not by eye: among `tries` renders of
    `seed` that neither smile nor wear glasses, the one whose Smiling +1.0 edit by
    `bundle` (as `make demo` runs it: eager, the render resized to the encoder's input)
    the judge reads as smiling most above its reconstruction. Returns the image
    [3,S,S], its render parameters and the judge's readings."""
    import torch
    from PIL import Image

    from vrfam_rt.backends.eager import EagerBackend
    from vrfam_rt.images import normalise, to_tensor
    from vrfam_rt.synthetic.oracles import load_judge
    from vrfam_rt.synthetic.faces import ATTRIBUTES

    params = sample_params(tries, seed=seed)
    plain = ((params.attribute("Smiling") == 0) & (params.attribute("Eyeglasses") == 0))
    indices = plain.nonzero()[:, 0].tolist()
    if not indices:
        raise VrfamError(f"no plain face among {tries} renders of seed {seed}")
    faces = render(params[indices], size)                               # [N,3,S,S] in [-1,1]
    side = bundle.config.encoder.input_size
    crops = torch.stack([to_tensor(to_pil(f).resize((side, side), Image.BICUBIC)) for f in faces])
    runner, judge = EagerBackend(bundle), load_judge().eval()
    alphas = torch.zeros(len(indices), len(bundle.attributes))
    alphas[:, bundle.attributes.index("Smiling")] = 1.0
    column = ATTRIBUTES.index("Smiling")
    with torch.no_grad():
        wplus = runner.encoder(normalise(crops, side))
        before = torch.sigmoid(judge(runner.generator(wplus))[:, column])
        after = torch.sigmoid(judge(runner.generator(runner.transformer(wplus, alphas)))[:, column])
    score = torch.where(before < 0.5, after - before, torch.full_like(after, -1.0))
    best = int(score.argmax())
    index = indices[best]
    return {"image": faces[best], "params": params[index:index + 1], "index": index,
            "judge_smiling": {"reconstruction": round(float(before[best]), 3),
                              "Smiling +1.0": round(float(after[best]), 3)},
            "candidates": len(indices)}


def write_example(suite: Path, seed: int = 7, tries: int = 512) -> dict:
    """(Re)write a suite's demo face (faces/example.png) and its entry in suite.json,
    picked for the suite's vrfam bundle by `pick_example`."""
    suite = Path(suite)
    example = pick_example(Bundle.load(suite / "vrfam"), seed=seed, tries=tries)
    save_png(to_pil(example["image"]), suite / "faces" / "example.png")
    manifest = suite_manifest(suite)
    manifest["example_face"] = {
        "file": "faces/example.png", "render_seed": seed, "render_index": example["index"],
        "attributes": example["params"].attributes[0].tolist(),
        "chosen_by": f"judge P(Smiling) of the edit minus the reconstruction's, best of "
                     f"{example['candidates']} plain renders",
        "judge_smiling": example["judge_smiling"]}
    write_json_atomic(suite / MANIFEST, manifest)
    return manifest["example_face"]


def write_suite(out: Path, bundles: dict[str, Path], notes: dict) -> Path:
    """Assemble a suite at `out` from one trained bundle per method (keeping only what
    an edit needs), with the demo face; it appears whole or not at all."""

    check_replaceable(out, "model suite", force=False)
    missing = [m for m in METHODS if m not in bundles]
    if missing:
        raise VrfamError(f"a suite needs a bundle for every method; missing {', '.join(missing)}")
    members = {}
    with staged_dir(out, "model suite", "vrfam-rt synth suite") as tmp:
        for method in METHODS:
            source = Bundle.load(bundles[method])
            keep = {k: v for k, v in source.modules.items() if k in KEEP}
            slim = Bundle(source.config, keep, {k: source.provenance.get(k) for k in keep})
            share = tmp / METHODS[0] if method != METHODS[0] else None
            slim.save(tmp / method, share=share)
            members[method] = {"source": str(bundles[method]),
                               "methods": slim.transformer_methods}
        write_json_atomic(tmp / MANIFEST, {"format": "vrfam-rt-suite", "methods": members,
                                           **notes})
        write_example(tmp)
    return out
