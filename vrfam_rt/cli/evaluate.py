"""`vrfam-rt eval`: the paper's Table 1 metrics of a bundle, on the synthetic faces or
on real photos."""
from __future__ import annotations

from pathlib import Path

import click

from vrfam_rt.cli.common import (FILE, Progress, bundle_from, bundle_options,
                                 json_option, many_option, runtime_options, say, set_threads,
                                 table, write_json)
from vrfam_rt.errors import UsageError, VrfamError
from vrfam_rt.config import ALPHA_LIMIT

EVAL_SEED = 20261126      # a seed no training run draws its faces from


@click.command("eval")
@bundle_options("evaluate")
@click.option("--images", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Real photos to evaluate on instead of the synthetic faces (needs "
              "--inception).")
@click.option("--no-align", is_flag=True, help="--images are face crops already.")
@click.option("--inception", type=FILE, help="TorchScript Inception for FID "
              "(inception-2015-12-05.pt of the StyleGAN2-ADA metrics).")
@runtime_options()
@click.option("--samples", default=256, show_default=True, type=click.IntRange(2),
              help="Faces to encode and edit (synthetic, or the first of --images).")
@many_option("--attr", "attrs", None, (), "Attributes to edit (any case) [default: all].",
             metavar="NAME,...")
@many_option("--alpha", "alphas", None, (-1.5, -1.0, 1.0, 1.5),
             f"Editing strengths in [-{ALPHA_LIMIT}, {ALPHA_LIMIT}].", convert=float,
             low=-ALPHA_LIMIT, high=ALPHA_LIMIT)
@click.option("--batch", default=64, show_default=True, type=click.IntRange(1),
              help="Faces per forward pass.")
@json_option()
def eval_cmd(bundle_path, method, config, seed, images, no_align, inception, backend, precision,
             device, threads, samples, attrs, alphas, batch, json_path):
    """Distortion, perception and editability FID, identity similarity and target /
    non-target attribute accuracy of a bundle's edits (the paper's Table 1 protocol).

    Synthetic faces (the default): the procedural renderer draws the inputs; the judge
    attribute oracle and the identity embedding, trained on its renders and used by no
    trainer, read attributes and identity, and the judge's features stand in for
    Inception unless --inception is given (the output names what stood in).

    Real photos (--images DIR): FID on --inception features; attributes read by the
    bundle's latent classifier on the re-encoded images; identity by the bundle's
    ArcFace when it has one, and by dlib's face descriptor.

    Example: vrfam-rt eval --method interfacegan --samples 512 --json table1.json
    """
    import torch

    from vrfam_rt.benchmarks.evaluate import table1
    from vrfam_rt.pipeline import EditPipeline, parse_edits
    from vrfam_rt.suite import method_of

    set_threads(threads)
    bundle = bundle_from(bundle_path, config, seed, method)
    label = str(bundle.path) if bundle.path else f"random {config}, seed {seed}"
    names = tuple(bundle.attributes)
    picked = [name for e in parse_edits(list(attrs), names) for name, _ in e.alphas] \
        if attrs else names
    targets = [names.index(a) for a in dict.fromkeys(picked)]
    size = bundle.config.encoder.input_size
    if images is not None and inception is None:
        raise UsageError("--images needs --inception FILE for FID (inception-2015-12-05.pt, "
                         "the TorchScript Inception of the StyleGAN2-ADA metrics)")
    pipe = EditPipeline.from_bundle(bundle, backend, precision, device,
                                    max_batch=batch, threads=threads,
                                    align=images is not None and not no_align, say=say)
    baselines, codes = {}, None
    if images is None:
        inputs, faces, judges, baselines = _synthetic(bundle, samples, size)
    else:
        inputs, codes, faces, judges = _photos(bundle, pipe, images, samples)
    if inception is not None:   # Inception replaces the oracle's stand-in features
        from vrfam_rt.benchmarks.evaluate import InceptionFeatures
        judges.features = InceptionFeatures(inception, device="cpu")
        judges.names["fid_features"] = f"Inception pool3 ({inception})"

    def back(images):        # generator output at the input resolution, on the CPU
        images = images.float().cpu()
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                     antialias=True, align_corners=False)
        return images

    recon, spread, edits = [], [], {(k, a): [] for k in targets for a in alphas}
    bar = Progress(len(inputs), "evaluating", "faces", "files")
    for start in range(0, len(inputs), batch):
        x = inputs[start:start + batch]                                  # [b,3,S,S]
        wplus = pipe.encode(x) if codes is None else codes[start:start + batch]   # [b,L,D]
        spread.append(wplus.float().var(dim=1, unbiased=False).sum(-1).cpu())
        recon.append(back(pipe.render(wplus)))
        for k, alpha in edits:
            a = torch.zeros(len(x), len(names))                          # [b,K]
            a[:, k] = alpha
            edits[(k, alpha)].append(back(pipe.render(wplus, a)))
        bar.update(len(x))
    report = table1(inputs, torch.cat(recon), {key: torch.cat(v) for key, v in edits.items()},
                    judges)
    for row in report["per_edit"]:
        row["attribute"] = names[row["attribute"]]
    # what the variance-reduced encoder minimises: the spread of the L style codes of
    # one face around their mean (0 for a W code repeated), averaged over faces
    report["wplus_variance"] = float(torch.cat(spread).mean())
    report.update(baselines)
    report.update({"bundle": label, "method": method_of(bundle), "backend": backend,
                   "precision": precision, "samples": len(inputs), "faces": faces})
    if judges.dlib is not None:
        report["dlib_fallback_boxes"] = judges.dlib.fallbacks
    _print(report)
    write_json(json_path, report)


def _synthetic(bundle, samples, size):
    """Procedural inputs, the oracle judges reading the bundle's attributes, and the
    identity embedding's baselines on those inputs (`identity_baselines`)."""
    import torch

    from vrfam_rt.benchmarks.evaluate import identity_baselines, oracle_judges
    from vrfam_rt.synthetic.oracles import load_judge, load_oracles
    from vrfam_rt.synthetic.faces import ATTRIBUTES, FaceParams, render, sample_params

    unknown = [a for a in bundle.attributes if a not in ATTRIBUTES]
    if unknown:
        raise VrfamError(f"the synthetic faces have no {unknown[0]}; this bundle was not "
                         "trained on them (evaluate it on real photos with --images)")
    judge, identity = load_judge(), load_oracles()[1]     # neither trained any bundle network
    judges = oracle_judges(judge, identity, [ATTRIBUTES.index(a) for a in bundle.attributes])
    params = sample_params(samples, seed=EVAL_SEED)
    inputs = render(params, size)
    nuisance = torch.rand(params.nuisance.shape,
                          generator=torch.Generator().manual_seed(EVAL_SEED + 1))
    retaken = render(FaceParams(params.attributes, params.identity, nuisance,
                                params.identity_id), size)
    baselines = identity_baselines(judges.identity, inputs, retaken, inputs.roll(1, 0))
    return inputs, f"procedural renders, seed {EVAL_SEED}, {size} px", judges, baselines


def _photos(bundle, pipe, folder, samples):
    """The photos of `folder` (the first `samples`) as the pipeline inverts them (images
    [N,3,S,S] in [-1,1], W+ [N,L,D]), and the real-photo judges."""
    from vrfam_rt.benchmarks.evaluate import DlibDescriptor, Judges
    from vrfam_rt.errors import MissingDependency
    from vrfam_rt.images import expand_inputs, normalise

    files = expand_inputs([folder])[:samples]
    if len(files) < 2:
        raise VrfamError(f"--images {folder}: FID needs at least 2 photos, found {len(files)}")
    inversion = pipe.invert(files, faces="largest", photos=False)
    if inversion.failures:
        raise inversion.failures[0].error
    inputs = normalise(inversion.crops, pipe.input_size)
    names = {"fid_features": "", "attribute_reader": "", "identity_model": ""}
    columns = [bundle.config.classifier.attributes.index(a) for a in bundle.attributes
               if a in bundle.config.classifier.attributes]
    read = None
    if len(columns) == len(bundle.attributes) and "classifier" in bundle.modules:
        classifier = bundle.classifier

        def read(images):
            return classifier(pipe.encode(images).float().cpu())[:, columns] > 0
        names["attribute_reader"] = "the bundle's latent classifier on re-encoded images"
    else:
        names["attribute_reader"] = "none: the bundle's classifier lacks an edited attribute"
    identity = None
    if bundle.identity is not None:
        identity = bundle.identity
        names["identity_model"] = "the bundle's ArcFace"
    try:
        dlib = DlibDescriptor()
        names["identity_model"] += (" and " if identity is not None else "") + \
            "dlib's face descriptor (dlib_distance, same person below 0.6)"
    except MissingDependency as exc:
        dlib = None
        names["identity_model"] = names["identity_model"] or f"none ({exc})"
    # FID features: the --inception network, which the caller sets
    judges = Judges(None, read, identity, dlib, names)
    faces = f"{len(files)} photos from {folder}" + (", aligned" if pipe.align else "")
    return inputs, inversion.wplus, faces, judges


def _print(report):
    head = (f"{report['bundle']} ({report['method']}) on {report['backend']} "
            f"{report['precision']}, {report['samples']} {report['faces']}")
    click.echo(head)
    for key in ("fid_features", "attribute_reader", "identity_model"):
        click.echo(f"  {key.replace('_', ' ')}: {report[key]}")
    metrics = ("distortion_l2", "perception_fid", "editability_fid", "wplus_variance",
               "identity_similarity", "identity_reconstruction", "identity_same_person",
               "identity_other_person",
               "dlib_distance", "dlib_same_person", "target_accuracy", "non_target_accuracy")
    rows = [{"metric": k, "value": report[k]} for k in metrics if k in report]
    click.echo(table(rows, [("metric", "metric", ""), ("value", "value", ".4f")]))
    click.echo("")
    columns = [("attribute", "attribute", ""), ("alpha", "alpha", "+.1f")]
    for header, key in (("target acc", "target_accuracy"), ("non-target acc",
                        "non_target_accuracy"), ("identity", "identity_similarity"),
                        ("dlib dist", "dlib_distance")):
        if key in report["per_edit"][0]:
            columns.append((header, key, ".3f"))
    click.echo(table(report["per_edit"], columns))


COMMANDS = (eval_cmd,)
