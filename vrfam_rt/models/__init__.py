"""Eager PyTorch networks of VR-FAM, built from a ModelConfig."""
from __future__ import annotations

from torch import nn

from vrfam_rt.config import ModelConfig
from vrfam_rt.models.encoder import Encoder, StyleEncoder
from vrfam_rt.models.identity import ArcFace
from vrfam_rt.models.latent import (FusedTransformer, LatentClassifier, LatentDiscriminator,
                                    LinearEdit, NonlinearEdit)
from vrfam_rt.models.stylegan2 import Generator

__all__ = ["ArcFace", "Encoder", "FusedTransformer", "Generator", "LatentClassifier",
           "LatentDiscriminator", "LinearEdit", "NonlinearEdit", "StyleEncoder", "build"]


def build(config: ModelConfig, component: str,
          transformer_methods: dict[str, str] | None = None) -> nn.Module:
    """One bundle component with freshly initialised weights, in eval mode."""
    g = config.generator
    n_latent, dim = g.n_latent, g.style_dim
    if component == "generator":
        module = Generator(g)
    elif component == "encoder":
        module = Encoder(config.encoder, n_latent, dim)
    elif component == "classifier":
        module = LatentClassifier(n_latent * dim, config.classifier.hidden,
                                  config.classifier.attributes)
    elif component == "transformer":
        module = FusedTransformer(config.transformer, n_latent, dim, transformer_methods)
    elif component == "identity":
        module = ArcFace(config.identity)
    elif component == "discriminator":
        module = LatentDiscriminator(dim)
    else:
        raise ValueError(f"unknown component {component!r}")
    return module.eval()
