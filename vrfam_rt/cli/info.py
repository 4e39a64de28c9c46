"""`vrfam-rt info` (what this machine offers) and `vrfam-rt import` (public checkpoints)."""
from __future__ import annotations

from pathlib import Path

import click

from vrfam_rt.cli.common import FILE, OUT_DIR, json_option, say, write_json
from vrfam_rt.errors import VrfamError
from vrfam_rt.suite import METHODS


@click.command()
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False,
                                                    path_type=Path))
@click.option("--bundle", "bundle_path", type=click.Path(exists=True, file_okay=False,
                                                         path_type=Path),
              help="Describe this bundle (or model suite) instead of the machine.")
@click.option("--method", type=click.Choice(METHODS, case_sensitive=False),
              help="Which bundle of the suite (its editing method).  [default: vrfam]")
@json_option("Also write the facts as JSON to this file.")
def info(images, bundle_path, method, json_path):
    """Versions, the backends usable here, the devices and the shipped default model;
    or what a bundle holds and can do (--bundle, --method); or how edited IMAGEs were
    made (the record `vrfam-rt edit` writes into each PNG).

    Examples: vrfam-rt info --json info.json;  vrfam-rt info --bundle bundles/ffhq;
    vrfam-rt info edits/photo_Smiling+1.0.png
    """
    from vrfam_rt import environment
    from vrfam_rt.images import read_provenance
    from vrfam_rt.suite import describe_bundle, describe_default

    if images and (bundle_path or method):
        raise click.UsageError("give IMAGEs, or --bundle/--method, not both")
    if images:
        facts = {str(path): read_provenance(path) for path in images}
        for path, record in facts.items():
            _section(path, record or {"made by": "no vrfam-rt record (not written by "
                                                 "`vrfam-rt edit`)"})
        write_json(json_path, facts)
        if not all(facts.values()):
            raise VrfamError("an image holds no vrfam-rt record")
        return
    if bundle_path or method:
        facts = describe_bundle(bundle_path, method and method.lower())
        _section("bundle", facts)
        write_json(json_path, facts)
        return
    from vrfam_rt.backends.registry import availability

    facts = environment.describe() | {"backends": availability(),
                                      "default model": describe_default()}
    for section in ("versions", "backends", "devices", "default model"):
        _section(section, facts[section])
    write_json(json_path, facts)


def _section(title: str, facts: dict) -> None:
    click.echo(f"{title}:")
    width = max((len(k) for k in facts), default=0)
    for key, value in facts.items():
        click.echo(f"  {key:<{width}}  {value}")




def _attr_file(ctx, param, values):
    pairs = {}
    for value in values:
        attr, sep, file = value.partition("=")
        if not sep or not attr or not file:
            raise click.BadParameter(f"{value!r} is not ATTR=FILE (e.g. Smiling=tnet_31.pth.tar)")
        if attr in pairs:
            raise click.BadParameter(f"attribute {attr} is given twice")
        pairs[attr] = Path(file)
    return pairs


@click.command("import")
@click.option("--stylegan2", type=FILE, help="StyleGAN2 generator: a rosinality checkpoint "
              "(needs 'g_ema') or an NVIDIA network pickle (stylegan2-ada-pytorch, stylegan3's "
              "StyleGAN2 configs; read without running the code it carries).")
@click.option("--pickle-key", metavar="KEY", help="Which network of an NVIDIA snapshot pickle: "
              "G_ema (the averaged generator) or G.  [default: G_ema]")
@click.option("--e4e", type=FILE, help="e4e encoder checkpoint (its decoder serves as generator "
              "when --stylegan2 is not given).")
@click.option("--psp", type=FILE, help="pSp encoder checkpoint (same layout, pSp forward).")
@click.option("--classifier", type=FILE, help="latent classifier (latent_classifier_epoch_20.pth).")
@click.option("--transformer", "transformers", multiple=True, callback=_attr_file,
              metavar="ATTR=FILE", help="released latent transformer for a CelebA attribute, "
              "e.g. Smiling=tnet_31.pth.tar; repeatable.")
@click.option("--arcface", type=FILE, help="IR-SE50 ArcFace weights (model_ir_se50.pth).")
@click.option("--out", required=True, type=OUT_DIR, help="Bundle directory to write.")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
def import_(stylegan2, pickle_key, e4e, psp, classifier, transformers, arcface, out, force):
    """Public checkpoints -> a bundle.

    Example: vrfam-rt import --e4e e4e_ffhq_encode.pt --transformer Smiling=tnet_31.pth.tar
    --classifier latent_classifier_epoch_20.pth --out bundles/ffhq
    """
    from vrfam_rt.importers.checkpoints import import_bundle
    from vrfam_rt.fileio import check_replaceable
    from vrfam_rt.importers.nvidia_pickles import is_network_pickle
    from vrfam_rt.suite import capabilities

    check_replaceable(out, "bundle", force)
    if pickle_key and not (stylegan2 and is_network_pickle(stylegan2)):
        raise click.UsageError("--pickle-key picks a network of an NVIDIA pickle; give the "
                               "pickle as --stylegan2 NETWORK.pkl")
    bundle = import_bundle(stylegan2=stylegan2, e4e=e4e, psp=psp, classifier=classifier,
                           transformers=transformers, arcface=arcface, pickle_key=pickle_key)
    bundle.save(out, overwrite=force, command="vrfam-rt import")
    _, missing = capabilities(bundle.modules, bundle.attributes)
    if missing:
        say(f"warning: {out} cannot do everything an edit needs; add " + "; ".join(missing))
    g = bundle.config.generator
    click.echo(f"wrote {out}: generator {g.size}px ({g.n_latent}x{g.style_dim} W+), "
               f"components {', '.join(bundle.modules)}"
               + (f", attributes {', '.join(bundle.attributes)}" if bundle.attributes else ""))


COMMANDS = (info, import_)
