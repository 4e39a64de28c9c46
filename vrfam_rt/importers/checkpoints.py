"""Reading the public checkpoints users already have (layouts: shared/UPSTREAM.md).

Every file is read with `torch.load(weights_only=True)` (NVIDIA's network pickles with
the restricted unpickler of nvidia_pickles): a pickle that would run code is refused.
Shapes are inferred from the weights, then each state dict is loaded strictly, so a
wrong or truncated file fails on its first bad key.
"""
from __future__ import annotations

import argparse
import difflib
import math
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch

from vrfam_rt import models
from vrfam_rt.importers import nvidia_pickles
from vrfam_rt.bundle import Bundle, check_state, load_state
from vrfam_rt.fileio import sha256_file
from vrfam_rt.config import (CELEBA_ATTRIBUTES, ClassifierConfig, EncoderConfig, GeneratorConfig,
                             IdentityConfig, ModelConfig, TransformerConfig, load_config)
from vrfam_rt.errors import UsageError, VrfamError

State = dict[str, torch.Tensor]
RELEASED_EDIT_LAYERS = 11   # latent-transformer edits W+ layers 0..10 at inference
SAFE_GLOBALS = [argparse.Namespace]  # rosinality training checkpoints keep their args


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The object in a PyTorch checkpoint, read without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise VrfamError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        found = re.search(r"(?:GLOBAL|[Uu]nsupported class) ([\w.]+)", str(exc))
        if found:
            raise VrfamError(f"{path}: refused, it holds pickled objects that would run code when "
                             f"loaded ({found.group(1)}); vrfam-rt reads only plain weight files") from None
        raise VrfamError(f"{path} is not a PyTorch checkpoint ({reason})") from None
    except Exception as exc:  # zip, EOF and magic-number errors all mean the same to a user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VrfamError(f"{path} is not a PyTorch checkpoint ({reason})") from None
    if not isinstance(obj, dict):
        raise VrfamError(f"{path} holds a {type(obj).__name__}, not a checkpoint dictionary")
    return obj


def _tensors(obj: dict[str, Any], path: Path, what: str) -> State:
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state or len(state) != len(obj):
        raise VrfamError(f"{path} is not a {what} state dict (found keys such as "
                         f"{sorted(obj)[:3]})")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _subdict(state: State, prefix: str) -> State:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _count(state: State, pattern: str) -> int:
    """How many distinct integer indices fill `pattern` (a regex with one group)."""
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def _require(state: State, key: str, path: Path, what: str) -> torch.Tensor:
    if key not in state:
        raise VrfamError(f"{path}: missing key '{key}'; this is not a {what} file")
    return state[key]


# ---- StyleGAN2 (rosinality layout) ------------------------------------------------------
def generator_config(state: State, path: Path) -> GeneratorConfig:
    what = "StyleGAN2 generator"
    n_rgb = _count(state, r"to_rgbs\.(\d+)\.")
    dim = _require(state, "style.1.weight", path, what).shape[0]
    channels = [_require(state, "conv1.conv.weight", path, what).shape[1]]
    for k in range(n_rgb):
        channels.append(_require(state, f"convs.{2 * k}.conv.weight", path, what).shape[1])
    # The FIR kernels are buffers in the file and are loaded as they are; the config keeps
    # the reference taps, whose 4x4 size the strict shape check then confirms.
    return GeneratorConfig(size=2 ** (n_rgb + 2), style_dim=dim,
                           n_mlp=_count(state, r"style\.(\d+)\.weight"),
                           channels=tuple(channels))


def stylegan2_state(ckpt: dict[str, Any], path: Path) -> State:
    if "g_ema" not in ckpt:
        raise VrfamError(f"{path}: no 'g_ema' entry; this is not a StyleGAN2 (rosinality) "
                         f"checkpoint (top-level keys: {sorted(ckpt)[:5]})")
    return _tensors(ckpt["g_ema"], path, "StyleGAN2 generator")


# ---- e4e / pSp ------------------------------------------------------------------------------
def irse_layout(state: State, path: Path, what: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(units per stage, channels per stage) of an IR-SE body; stages start where width changes."""
    n_units = _count(state, r"body\.(\d+)\.")
    depth = [_require(state, f"body.{i}.res_layer.1.weight", path, what).shape[0]
             for i in range(n_units)]
    starts = [0] + [i for i in range(1, n_units) if depth[i] != depth[i - 1]]
    units = tuple(b - a for a, b in zip(starts, starts[1:] + [n_units]))
    if len(units) != 4:
        raise VrfamError(f"{path}: the IR-SE body has {len(units)} stages, vrfam-rt expects 4")
    return units, tuple(depth[i] for i in starts)


def encoder_config(state: State, mode: str, path: Path) -> EncoderConfig:
    units, channels = irse_layout(state, path, "e4e/pSp encoder")
    n_convs = _count(state, r"styles\.0\.convs\.(\d+)\.weight")
    return EncoderConfig(input_size=16 * 2**n_convs, units=units, channels=channels, mode=mode)


def encoder_states(ckpt: dict[str, Any], path: Path) -> tuple[State, State, torch.Tensor | None]:
    """(encoder state, decoder state, latent_avg) of an e4e/pSp file."""
    if "state_dict" not in ckpt:
        raise VrfamError(f"{path}: no 'state_dict' entry; this is not an e4e/pSp checkpoint")
    state = _tensors(ckpt["state_dict"], path, "e4e/pSp")
    encoder = _subdict(state, "encoder.")
    if not encoder:
        raise VrfamError(f"{path}: no 'encoder.*' weights; this is not an e4e/pSp checkpoint")
    latent_avg = ckpt.get("latent_avg")
    return encoder, _subdict(state, "decoder."), latent_avg


# ---- latent-transformer ---------------------------------------------------------------------
def _bare_state(ckpt: dict[str, Any], path: Path, what: str) -> State:
    if "state_dict" in ckpt and isinstance(ckpt["state_dict"], dict):
        ckpt = ckpt["state_dict"]
    return _tensors(ckpt, path, what)


def _read_bare(file: str | Path, what: str) -> tuple[State, Path]:
    """A checkpoint holding one network's state dict (bare or under 'state_dict')."""
    path = Path(file)
    return _bare_state(read_checkpoint(path), path, what), path


def classifier_config(state: State, path: Path) -> ClassifierConfig:
    n = _count(state, r"fcs\.(\d+)\.weight")
    if n < 1:
        raise VrfamError(f"{path}: no 'fcs.*' weights; this is not a latent classifier file")
    widths = [_require(state, f"fcs.{i}.weight", path, "latent classifier").shape[0]
              for i in range(n)]
    if widths[-1] != len(CELEBA_ATTRIBUTES):
        raise VrfamError(f"{path}: the classifier predicts {widths[-1]} attributes; vrfam-rt "
                         f"names the {len(CELEBA_ATTRIBUTES)} CelebA attributes")
    return ClassifierConfig(hidden=tuple(widths[:-1]), attributes=CELEBA_ATTRIBUTES)


def check_attribute(name: str, path: Path) -> str:
    """CelebA's spelling of an attribute given in any case; a UsageError for a name that
    is not one of the 40."""
    name = {a.lower(): a for a in CELEBA_ATTRIBUTES}.get(name.lower(), name)
    if name in CELEBA_ATTRIBUTES:
        index = CELEBA_ATTRIBUTES.index(name)
        found = re.search(r"tnet_(\d+)", path.name)
        if found and int(found.group(1)) != index:
            print(f"warning: {path.name} is named for CelebA attribute {found.group(1)} "
                  f"({CELEBA_ATTRIBUTES[int(found.group(1))] if int(found.group(1)) < 40 else '?'})"
                  f", imported as {name} (index {index})", file=sys.stderr)
        return name
    close = difflib.get_close_matches(name, CELEBA_ATTRIBUTES, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UsageError(f"transformer {path}: unknown attribute {name!r}{hint} "
                     f"(valid: {', '.join(CELEBA_ATTRIBUTES)})")


# ---- ArcFace ----------------------------------------------------------------------------------
def identity_config(state: State, path: Path) -> IdentityConfig:
    what = "IR-SE ArcFace"
    units, channels = irse_layout(state, path, what)
    linear = _require(state, "output_layer.3.weight", path, what)
    side = math.isqrt(linear.shape[1] // channels[-1])
    return IdentityConfig(input_size=16 * side, units=units, channels=channels,
                          embed_dim=linear.shape[0])


# ---- the bundle ---------------------------------------------------------------------------------
def import_bundle(stylegan2: Path | None = None, e4e: Path | None = None, psp: Path | None = None,
                  classifier: Path | None = None, transformers: dict[str, Path] | None = None,
                  arcface: Path | None = None, pickle_key: str | None = None) -> Bundle:
    """A bundle from public checkpoint files; each file is checked key by key.

    stylegan2: a rosinality checkpoint or an NVIDIA network pickle (nvidia_pickles, read
    without running its code); pickle_key picks the pickle's generator (default G_ema).
    """
    transformers = dict(transformers or {})
    if e4e and psp:
        raise UsageError("give `e4e=FILE` or `psp=FILE`, not both: a bundle has one encoder")
    if not (stylegan2 or e4e or psp):
        raise UsageError("a bundle needs a generator: give `stylegan2=FILE`, or `e4e=FILE` or "
                         "`psp=FILE` whose decoder.* weights hold one")
    transformers = {check_attribute(attr, Path(file)): file for attr, file in transformers.items()}

    provenance: dict[str, Any] = {}

    def source(component: str, path: Path, layout: str) -> None:
        provenance[component] = {"source": "import", "layout": layout, "file": Path(path).name,
                                 "sha256": sha256_file(Path(path))}

    enc_path, mode = (Path(e4e), "e4e") if e4e else (Path(psp), "psp") if psp else (None, None)
    enc_state = decoder_state = latent_avg = None
    if enc_path:
        enc_state, decoder_state, latent_avg = encoder_states(read_checkpoint(enc_path), enc_path)

    g_path = Path(stylegan2) if stylegan2 else None
    if g_path and g_path.is_file() and nvidia_pickles.is_network_pickle(g_path):
        g_config, g_state, provenance["generator"] = nvidia_pickles.read_generator(g_path,
                                                                                   pickle_key)
    elif pickle_key is not None:
        raise UsageError(f"pickle_key {pickle_key!r} picks a network of an NVIDIA network "
                         f"pickle; stylegan2={g_path} is not one")
    elif g_path:
        g_state = stylegan2_state(read_checkpoint(g_path), g_path)
        source("generator", g_path, "rosinality stylegan2 g_ema")
        g_config = generator_config(g_state, g_path)
    else:
        g_path, g_state = enc_path, decoder_state
        if not g_state:
            raise VrfamError(f"{enc_path} has no 'decoder.*' weights; give `stylegan2=FILE`")
        source("generator", g_path, f"{mode} decoder")
        g_config = generator_config(g_state, g_path)

    template = load_config("ffhq-1024")
    n_latent, dim = g_config.n_latent, g_config.style_dim
    config = ModelConfig(
        name="imported",
        generator=g_config,
        encoder=encoder_config(enc_state, mode, enc_path) if enc_path else template.encoder,
        classifier=template.classifier,
        transformer=TransformerConfig(attributes=tuple(transformers), method="linear",
                                      layers=(0, min(RELEASED_EDIT_LAYERS, n_latent)), hidden=dim),
        identity=None,
    )
    states: dict[str, tuple[State, Path]] = {"generator": (g_state, g_path)}
    optional: dict[str, tuple[str, ...]] = {}

    if enc_path:
        if latent_avg is None:
            raise VrfamError(f"{enc_path}: no 'latent_avg' entry; e4e/pSp files carry the "
                             "average latent their codes are relative to")
        latent_avg = latent_avg.float().reshape(-1, dim).expand(n_latent, dim)
        state = {f"encoder.{k}": v for k, v in enc_state.items()} | {"latent_avg": latent_avg}
        states["encoder"] = (state, enc_path)
        source("encoder", enc_path, f"{mode} encoder")
    if classifier:
        c_state, c_path = _read_bare(classifier, "latent classifier")
        config = config.replace(classifier=classifier_config(c_state, c_path))
        states["classifier"] = (c_state, c_path)
        source("classifier", c_path, "latent-transformer LCNet")
    if transformers:
        t_state = {}
        for attr, file in transformers.items():
            state, t_file = _read_bare(file, "latent transformer")
            t_state |= {f"transforms.{attr}.{k}": v for k, v in state.items()}
            source(f"transformer.{attr}", t_file, "latent-transformer F_mapping")
        states["transformer"] = (t_state, Path(next(iter(transformers.values()))))
    if arcface:
        a_state, a_path = _read_bare(arcface, "ArcFace")
        config = config.replace(identity=identity_config(a_state, a_path))
        states["identity"] = (a_state, a_path)
        optional["identity"] = ("num_batches_tracked",)
        source("identity", a_path, "IR-SE50 ArcFace")

    modules = {}
    for name, (state, path) in states.items():
        if name == "transformer":
            _check_transformer_files(state, transformers, n_latent, dim)
        module = models.build(config, name)
        modules[name] = load_state(module, state, str(path), optional.get(name, ()))
    return Bundle(config, modules, provenance)


def _check_transformer_files(state: State, files: dict[str, Path], n_latent: int,
                             dim: int) -> None:
    """Name the right file when one released transformer does not fit the generator."""
    expected = models.LinearEdit(n_latent, dim, (0, n_latent)).state_dict()
    for attr, file in files.items():
        check_state(expected, _subdict(state, f"transforms.{attr}."), str(file))
