"""Writers of the public checkpoint layouts (shared/UPSTREAM.md), for import round trips.

Each writes what the upstream project saves, from one of our modules' weights, so a
test can import the file and compare against the module it came from.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def _cpu(state):
    return {k: v.detach().clone() for k, v in state.items()}


def write_stylegan2(path: Path, generator, training: bool = False) -> Path:
    """rosinality: {'g_ema', 'latent_avg'}; a training checkpoint adds g, d, optimisers, args."""
    g_ema = _cpu(generator.state_dict())
    ckpt = {"g_ema": g_ema, "latent_avg": generator.mean_latent(256)[0]}
    if training:
        ckpt |= {"g": g_ema, "d": {"convs.0.0.weight": torch.zeros(1)}, "g_optim": {},
                 "d_optim": {}, "args": argparse.Namespace(size=generator.config.size, iter=10)}
    torch.save(ckpt, path)
    return path


def write_e4e(path: Path, encoder, generator, with_decoder: bool = True) -> Path:
    """e4e/pSp: {'state_dict': encoder.* + decoder.*, 'opts': dict, 'latent_avg' [L,D]}."""
    state = {f"encoder.{k}": v for k, v in _cpu(encoder.encoder.state_dict()).items()}
    if with_decoder:
        state |= {f"decoder.{k}": v for k, v in _cpu(generator.state_dict()).items()}
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": generator.config.size,
            "start_from_latent_avg": True, "checkpoint_path": None}
    torch.save({"state_dict": state, "opts": opts,
                "latent_avg": encoder.latent_avg.detach().clone()}, path)
    return path


def write_bare(path: Path, module, drop_suffix: str | None = None) -> Path:
    """A bare state dict (LCNet classifier, F_mapping tnet, IR-SE50 ArcFace)."""
    state = _cpu(module.state_dict())
    if drop_suffix:
        state = {k: v for k, v in state.items() if not k.endswith(drop_suffix)}
    torch.save(state, path)
    return path
