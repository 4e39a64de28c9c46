"""`vrfam-rt train ...`: the trainers of vrfam_rt.training behind click commands.

Every trainer takes the same core flags (input bundle, data, steps, batch, lr, output,
resume, seed) and writes OUT/checkpoint.pt, OUT/log.csv, OUT/run.json and OUT/bundle/.
Launched by `torchrun --nproc_per_node N -m vrfam_rt train ...` it trains data-parallel.
Heavy libraries are imported inside the commands.
"""
from __future__ import annotations

import functools
from pathlib import Path

import click

from vrfam_rt.cli.common import (DEVICE_OR_AUTO, FILE, OUT_DIR, environment, many_option, say,
                                 set_threads, weight_option, write_json)
from vrfam_rt.config import config_names
from vrfam_rt.errors import MissingDependency, UsageError, VrfamError

GENERATOR = "generator"
SYNTH = "synth"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def train():
    """Train the VR-FAM networks into a bundle.

    Example: vrfam-rt train classifier --config tiny --data latents.safetensors --out runs/cls
    """


def core_options(lr: float, batch: int, steps: int, data_help: str, data_metavar: str = ""):
    """The flags every trainer shares; defaults are the paper's for that network. The
    --data metavar offers what the help names ('generator' only where it says so)."""
    data_metavar = data_metavar or ("DIR|FILE|generator" if f"'{GENERATOR}'" in data_help
                                    else "DIR|FILE")
    def wrap(command):
        options = [
            click.option("--config", type=click.Choice(config_names()),
                         help="Start from a seeded random bundle of this config."),
            click.option("--bundle", "bundle_path", type=FILE,
                         help="Start from this bundle (its frozen networks are used)."),
            click.option("--data", required=True, help=data_help, metavar=data_metavar),
            click.option("--attrs", type=FILE, help="CelebA-style attribute file "
                         "(list_attr_celeba.txt layout) labelling the images of --data DIR."),
            click.option("--no-align", is_flag=True,
                         help="Images of --data DIR are face crops already: resize only."),
            click.option("--steps", default=steps, show_default=True, type=click.IntRange(1),
                         help="Optimizer steps in all (a resumed run goes on to this)."),
            click.option("--batch", default=batch, show_default=True, type=click.IntRange(1),
                         help="Global batch (split evenly over torchrun processes)."),
            click.option("--lr", default=lr, show_default=True, type=click.FloatRange(min=0),
                         help="Adam learning rate."),
            click.option("--out", required=True, type=OUT_DIR,
                         help="Run folder: checkpoint.pt, log.csv, run.json, bundle/."),
            click.option("--resume", is_flag=True, help="Continue the run in --out."),
            click.option("--seed", default=0, show_default=True, type=int,
                         help="Seed of the initial weights and the data order."),
            click.option("--checkpoint-every", default=500, show_default=True,
                         type=click.IntRange(1), help="Steps between checkpoints."),
            click.option("--device", default="auto", show_default=True, type=DEVICE_OR_AUTO,
                         metavar="auto|cpu|cuda[:N]",
                         help="cpu, cuda[:N], or auto (cuda when available)."),
            click.option("--threads", type=click.IntRange(1), help="CPU threads for torch."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]
        return functools.reduce(lambda c, o: o(c), reversed(options), command)
    return wrap


def arcface_options(command):
    options = [
        click.option("--arcface", type=FILE, help="IR-SE50 ArcFace weights (model_ir_se50.pth, "
                     "a bare state dict) for the identity loss."),
        click.option("--no-identity", is_flag=True, help="Train without the identity loss."),
    ]
    return functools.reduce(lambda c, o: o(c), reversed(options), command)


def _command_line(ctx: click.Context) -> str:
    """The command as a user would type it, rebuilt from the parsed options."""
    parts = ["vrfam-rt", "train", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value is False or value == ():
            continue
        flag = param.opts[0]
        if isinstance(param, click.Option) and param.is_flag:
            parts.append(flag)
        else:
            for v in (value if param.multiple else (value,)):
                parts += [flag, str(v)]
    return " ".join(parts)


def _start(ctx: click.Context, p: dict):
    """(input bundle, RunOptions, Ranks): ranks joined, seeds set, the bundle loaded."""
    import torch

    from vrfam_rt.suite import open_bundle
    from vrfam_rt.training.core import RunOptions, init_ranks, seed_everything

    if not (p["bundle_path"] or p["config"]):      # a run names what it starts from
        raise UsageError("give --bundle B or --config C: the bundle training starts from")
    device = p["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingDependency(f"--device {device}: no CUDA device is usable here; "
                                "use --device cpu")
    set_threads(p["threads"])
    bundle = open_bundle(p["bundle_path"], config=p["config"],       # before any rank joins
                         seed=p["seed"] if p["config"] else None)
    ranks = init_ranks(device, environment())
    seed_everything(p["seed"])
    options = RunOptions(out=p["out"], steps=p["steps"], batch=p["batch"], lr=p["lr"],
                         seed=p["seed"], resume=p["resume"],
                         checkpoint_every=p["checkpoint_every"], command=_command_line(ctx),
                         progress=not p["quiet"])
    ranks.shard(options.batch)  # fails early when the batch does not split over the ranks
    return bundle, options, ranks


def _latents(p: dict, bundle, allow_generator: bool):
    """The latent dataset of --data, or None for --data generator."""
    from vrfam_rt.training.data import latent_dataset

    if p["data"] == GENERATOR:
        if not allow_generator:
            raise VrfamError("--data generator has no attribute labels; give a latent dataset "
                             "file or an image folder with --attrs")
        return None
    return latent_dataset(Path(p["data"]), p["attrs"], bundle, align=not p["no_align"])


def _finish(task, options, ranks, p: dict) -> None:
    from vrfam_rt.training.core import run

    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in p.items()}
    try:
        bundle_dir, result = run(task, options, ranks, args)
    finally:
        ranks.close()
    if ranks.main:
        extra = "".join(f", {k} {v:.4f}" for k, v in result.items())
        click.echo(f"wrote {bundle_dir} ({options.steps} steps{extra})")


LATENT_DATA = ("a latent dataset file (.safetensors with wplus, labels), or an image folder "
               "labelled by --attrs (encoded with the bundle's encoder once, cached)")


@train.command()
@core_options(lr=1e-3, batch=32, steps=20000, data_help=LATENT_DATA + ".")
@click.option("--oracle-mixes", default=0, show_default=True, type=click.IntRange(0),
              help="Procedural faces: add this many codes on lines through two training "
                   "codes (up to half their distance beyond either), labelled by the shipped "
                   "training attribute oracle reading the generator's image of each (the "
                   "judge of `eval` stays out of training).")
@click.pass_context
def classifier(ctx, **p):
    """Latent classifier C: W+ -> attribute logits (BCE), over the labels' attributes.

    Example: vrfam-rt train classifier --bundle bundles/ffhq --data celebahq/ --attrs
    celebahq/list_attr_celeba.txt --out runs/classifier
    """
    from vrfam_rt.training.classifier import ClassifierTask, oracle_mixes

    bundle, options, ranks = _start(ctx, p)
    data = _latents(p, bundle, allow_generator=False)
    if p["oracle_mixes"]:
        from vrfam_rt.synthetic.oracles import load_oracles
        data = oracle_mixes(data, bundle.generator.eval().to(ranks.device),
                            load_oracles()[0].to(ranks.device), p["oracle_mixes"], options.seed)
    task = ClassifierTask(bundle, data, options, ranks)
    _finish(task, options, ranks, p)


@train.command()
@core_options(lr=1e-3, batch=32, steps=100000,
              data_help=LATENT_DATA + ", or 'generator' (W codes from the frozen generator).")
@click.option("--attr", required=True, help="Attribute to learn, one the classifier predicts.")
@click.option("--method", type=click.Choice(["linear", "nonlinear"]),
              help="Transformer form (default: the bundle config's).")
@click.option("--alpha-mode", default="released", show_default=True,
              type=click.Choice(["released", "uniform"]),
              help="released: alpha = -p if p > 0.5 else 1 - p (p = C(w)[attr]), target the "
              "flipped label; uniform: alpha ~ U(-1.5, 1.5), target = alpha > 0.")
@weight_option("--lambda-cls", 1.0,
               "Weight of the target attribute's classification loss.")
@weight_option("--lambda-attr", 1.0,
               "Weight of keeping the other attributes (correlation-weighted).")
@weight_option("--lambda-id", 1.0,
               "Weight of the ArcFace identity loss on the rendered edit (needs --arcface).")
@weight_option("--lambda-latent", 0.0,
               "Latent reconstruction mean (T(w) - w)^2, as in the released "
               "latent-transformer code (weight 10 there; not in the paper). Bounds the edit "
               "when --no-identity leaves nothing else to.")
@arcface_options
@click.pass_context
def transformer(ctx, **p):
    """Latent transformer T(w, alpha) = w + alpha f(w) for one attribute (eq. 6-8, 10).

    Example: vrfam-rt train transformer --bundle runs/classifier/bundle --data
    celebahq/ --attrs celebahq/list_attr_celeba.txt --attr Smiling --arcface
    model_ir_se50.pth --out runs/smiling
    """
    from vrfam_rt.training.losses import load_arcface
    from vrfam_rt.training.transformer import TransformerLoss, TransformerTask

    bundle, options, ranks = _start(ctx, p)
    arcface = None if p["no_identity"] else load_arcface(p["arcface"]).to(ranks.device)
    weights = TransformerLoss(p["lambda_cls"], p["lambda_attr"], p["lambda_id"],
                              p["lambda_latent"])
    task = TransformerTask(bundle, _latents(p, bundle, allow_generator=True), p["attr"],
                           p["method"], p["alpha_mode"], arcface, weights, options, ranks)
    _finish(task, options, ranks, p)


@train.command()
@core_options(lr=1e-2, batch=1, steps=1000,
              data_help=LATENT_DATA + " (codes averaged over layers), or 'generator' (W codes "
              "scored by the bundle's classifier).")
@many_option("--attr", "attrs_", None, (), "Attributes to find a boundary for.",
             metavar="NAME,...", required=True)
@many_option("--condition", "conditions", None, (),
             "Attributes whose directions are projected out of the others.", metavar="NAME,...")
@click.option("--samples", default=20000, show_default=True, type=click.IntRange(2),
              help="--data generator: W codes to sample.")
@click.option("--ratio", default=0.02, show_default=True, type=click.FloatRange(0, 0.5),
              help="--data generator: top/bottom share of the scores used as positives/negatives.")
@click.option("--distance", default=3.0, show_default=True, type=float,
              help="Bundle edit: alpha 1 moves W+ this far along the unit boundary.")
@click.pass_context
def boundaries(ctx, **p):
    """InterFaceGAN boundaries: linear SVMs (squared hinge, C=1) on W codes.

    The whole problem is fitted in full batches (--batch is unused). Writes
    OUT/boundaries.safetensors ({attr: [1,D]} unit normals) and a bundle whose
    transformer edits along them.

    Example: vrfam-rt train boundaries --bundle runs/classifier/bundle --data generator
    --attr Smiling --attr Eyeglasses --condition Male --out runs/interfacegan
    """
    from safetensors.torch import save_file

    from vrfam_rt.fileio import atomic_file
    from vrfam_rt.training.boundaries import BoundaryTask

    bundle, options, ranks = _start(ctx, p)
    task = BoundaryTask(bundle, _latents(p, bundle, allow_generator=True), p["attrs_"],
                        p["conditions"], p["samples"], p["ratio"], p["distance"], options, ranks)
    _finish(task, options, ranks, p)
    if ranks.main:
        with atomic_file(Path(p["out"]) / "boundaries.safetensors") as tmp:
            save_file({a: n[None].contiguous() for a, n in task.boundaries().items()}, tmp)


@train.command()
@core_options(lr=1e-4, batch=4, steps=54000,
              data_help="an image folder (all its images, or those --attrs lists; aligned on "
              "first use, cached), or 'generator' (the frozen generator's own samples).")
@click.option("--lpips-weights", type=FILE, help="LPIPS weights: the lin heads "
              "(lin{0..4}.model.1.weight, e.g. lpips/weights/v0.1/alex.pth), optionally with "
              "the backbone's features.* keys in the same file.")
@click.option("--lpips-backbone", type=FILE, help="The LPIPS backbone in torchvision layout "
              "(features.N.weight/bias of AlexNet or VGG16) when --lpips-weights lacks it.")
@click.option("--no-perceptual", is_flag=True, help="Train without the perceptual loss.")
@click.option("--oracle-perceptual", is_flag=True,
              help="Procedural faces: the perceptual loss from the shipped training attribute "
              "oracle's features instead of LPIPS (it sees mouths that pixel L2 misses; the "
              "judge, which scores `eval`, stays out of training).")
@arcface_options
@click.option("--init-backbone", type=FILE, help="Start the encoder's IR-SE body from these "
              "ArcFace IR-SE50 weights (model_ir_se50.pth), as e4e does.")
@weight_option("--lambda-l2", 1.0,
               "Weight of the pixel L2 loss.")
@weight_option("--lambda-lpips", 0.8,
               "Weight of the perceptual loss.")
@weight_option("--lambda-id", 0.1,
               "Weight of the ArcFace identity loss.")
@weight_option("--lambda-reg", 2e-4,
               "Weight of the delta-norm regulariser of the W+ offsets.")
@weight_option("--lambda-adv", 0.1,
               "Latent discriminator weight (0 trains without it).")
@click.option("--r1", default=10.0, show_default=True, type=float, help="R1 gamma.")
@click.option("--d-reg-every", default=16, show_default=True, type=click.IntRange(1),
              help="Lazy R1: every this many steps.")
@click.option("--d-lr", default=2e-5, show_default=True, type=click.FloatRange(min=0),
              help="Latent discriminator learning rate.")
@click.option("--progressive-start", default=20000, show_default=True, type=click.IntRange(0),
              help="Steps that learn the shared code only.")
@click.option("--progressive-every", default=2000, show_default=True, type=click.IntRange(1),
              help="Steps between two new deltas.")
@click.pass_context
def encoder(ctx, **p):
    """Variance-reduced e4e encoder against the frozen generator (eq. 1-3, 5, 9).

    The default --steps (20000 + 17 x 2000) reaches every delta of an 18-layer W+.

    Example: vrfam-rt train encoder --bundle bundles/stylegan2 --data ffhq/ --lpips-weights
    alex.pth --lpips-backbone alexnet-owt-7be5be79.pth --arcface model_ir_se50.pth --out runs/enc
    """
    from vrfam_rt.training.data import ImageFolder, read_attributes
    from vrfam_rt.training.encoder import EncoderLoss, EncoderTask, Progressive, init_backbone
    from vrfam_rt.training.losses import load_arcface, load_lpips, read_weights

    bundle, options, ranks = _start(ctx, p)
    if p["oracle_perceptual"] and (p["no_perceptual"] or p["lpips_weights"]):
        raise click.UsageError("--oracle-perceptual replaces LPIPS; leave out --no-perceptual "
                               "and --lpips-weights")
    if p["oracle_perceptual"]:
        from vrfam_rt.training.generator import OraclePerceptual
        from vrfam_rt.synthetic.oracles import load_oracles
        lpips = OraclePerceptual(load_oracles()[0])
    else:
        lpips = None if p["no_perceptual"] else load_lpips(p["lpips_weights"],
                                                           p["lpips_backbone"])
    arcface = None if p["no_identity"] else load_arcface(p["arcface"])
    images = None
    if p["data"] != GENERATOR:
        files = read_attributes(p["attrs"])[1] if p["attrs"] else None
        size = bundle.config.encoder.input_size
        images = ImageFolder(Path(p["data"]), files, size, align=not p["no_align"])
    weights = EncoderLoss(p["lambda_l2"], p["lambda_lpips"], p["lambda_id"], p["lambda_reg"],
                          p["lambda_adv"], p["r1"], p["d_reg_every"], p["d_lr"])
    progressive = Progressive(p["progressive_start"], p["progressive_every"])
    task = EncoderTask(bundle, images, lpips, arcface, weights, progressive, options, ranks)
    if p["init_backbone"] and not p["resume"]:
        init_backbone(task.encoder, read_weights(p["init_backbone"], "--init-backbone"),
                      str(p["init_backbone"]))
    _finish(task, options, ranks, p)


@train.command()
@core_options(lr=1e-2, batch=32, steps=3000,
              data_help="'synth': fresh procedural renders of params_from_noise(z) every step.",
              data_metavar="synth")
@click.option("--oracle", "oracle_dir", type=FILE, help="Attribute oracle folder for the "
              "feature loss and the evaluation (default: the shipped one).")
@weight_option("--lambda-l1", 1.0,
               "Weight of the L1 distance to the teacher image.")
@weight_option("--lambda-multiscale", 1.0,
               "L1 of the 2x and 4x average-pooled difference.")
@weight_option("--lambda-feature", 1.0,
               "L1 between the frozen attribute oracle's conv features (0: off).")
@click.option("--lr-final", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="Cosine learning-rate decay to this fraction of --lr at the last step "
              "(1: constant).")
@click.option("--eval-samples", default=2000, show_default=True, type=click.IntRange(1),
              help="Held-out samples for the oracle agreement written to OUT/metrics.json.")
@click.pass_context
def generator(ctx, **p):
    """StyleGAN2 generator distilled from the procedural renderer (training/generator.py).

    G(mapping(z)) learns render(params_from_noise(z)) for z ~ N(0, I); the config's
    style_dim must be >= 40. Writes OUT/metrics.json: the attribute oracle's agreement
    on G's samples with the renderer's attributes for the same z.

    Example: vrfam-rt train generator --config tiny --data synth --out runs/generator
    """
    from vrfam_rt.training.generator import DistillLoss, GeneratorTask
    from vrfam_rt.synthetic.oracles import load_judge, load_oracles

    if p["data"] != SYNTH:
        raise UsageError(f"--data {p['data']}: the generator trains on --data {SYNTH} only")
    bundle, options, ranks = _start(ctx, p)
    oracle = load_oracles(p["oracle_dir"])[0]
    try:
        judge = load_judge(p["oracle_dir"])
    except VrfamError as exc:      # an oracle folder without a judge: agreement by the oracle
        judge = None
        say(f"note: {exc}")
    weights = DistillLoss(p["lambda_l1"], p["lambda_multiscale"], p["lambda_feature"])
    task = GeneratorTask(bundle, oracle, weights, p["eval_samples"], options, ranks,
                         lr_final=p["lr_final"], judge=judge)
    _finish(task, options, ranks, p)
    if ranks.main:
        write_json(Path(p["out"]) / "metrics.json", task.metrics)


COMMANDS = (train,)
