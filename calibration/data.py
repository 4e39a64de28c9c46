"""Calibration and evaluation inputs: image folders, or samples of the bundle's generator."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from vrfam_rt.bundle import Bundle
from vrfam_rt.images import image_files, load_image

TRUNCATION = 0.7   # samples are drawn toward the mean latent, as face-editing demos do


def folder_images(folder: str | Path, size: int, limit: int | None = None) -> torch.Tensor:
    """Images of a folder, preprocessed as for editing: [N,3,size,size] in [-1,1]."""
    files = image_files(folder)[:limit]
    return torch.stack([load_image(f, size) for f in files])


def generator_samples(bundle: Bundle, n: int, seed: int = 0,
                      batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded generator samples: (images at the encoder's input size [n,3,S,S], W+ [n,L,D])."""
    g = bundle.generator
    config = bundle.config
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, config.generator.latent_dim, generator=gen)
    size = config.encoder.input_size
    images, codes = [], []
    with torch.no_grad():
        mean = g.mean_latent(4096, seed=seed)
        for chunk in z.split(batch):
            w = mean + TRUNCATION * (g.mapping(chunk) - mean)              # [b,D]
            wplus = w[:, None].expand(-1, config.generator.n_latent, -1)    # [b,L,D]
            image = g(wplus)
            images.append(F.interpolate(image, size=(size, size), mode="area").clamp(-1, 1))
            codes.append(wplus)
    return torch.cat(images), torch.cat(codes)
