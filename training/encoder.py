"""The variance-reduced e4e encoder (paper 2.1, eq. 1-3, 5, 9) against a frozen generator.

Per step, on images x [b,3,S,S] (real, or rendered by the generator from seeded W codes):
1. discriminator: softplus(-D(w_real)) + softplus(D(w_fake)) (eq. 2), w_real = mapping(z),
   w_fake the encoder's active codes; every `d_reg_every` steps plus the lazy R1 term
   d_reg_every * gamma/2 * ||grad_w D(w_real)||^2;
2. encoder: L_E = l2 ||G(E(x)) - x||^2 + perceptual LPIPS + id (1 - <R(x), R(G(E(x)))>)
   + reg sum_i ||Delta_i||_2 (eq. 1) + adv mean_i softplus(-D(E(x)_i)) (eq. 3),
   G's output resized to the encoder's input size (as pSp compares at 256).

Progressive schedule: only the shared code w is learnt for the first `start` steps,
then delta i joins at step start + (i - 1) * every (paper: 20K, then 2K per delta).
The encoder's BatchNorm layers stay in eval mode (frozen statistics): the batch of 4
is too small for useful statistics, and the result then does not depend on how the
batch is split over data-parallel processes. The generator is frozen.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from vrfam_rt import models
from vrfam_rt.bundle import Bundle
from vrfam_rt.training.core import (RunOptions, Ranks, Task, batch_indices, optimise,
                                    step_generator)
from vrfam_rt.training.data import ImageFolder, resize, sample_w
from vrfam_rt.training.losses import frozen, identity_loss, nonsaturating, r1_penalty


@dataclasses.dataclass(frozen=True)
class EncoderLoss:
    """Loss weights (the paper's defaults) and the discriminator's settings (e4e's)."""

    l2: float = 1.0
    perceptual: float = 0.8
    id: float = 0.1
    reg: float = 2e-4
    adv: float = 0.1
    r1: float = 10.0          # gamma of eq. 2
    d_reg_every: int = 16     # lazy R1: every this many steps, scaled up by it
    d_lr: float = 2e-5


@dataclasses.dataclass(frozen=True)
class Progressive:
    start: int = 20000        # steps that learn the shared code w only
    every: int = 2000         # steps between two new deltas

    def stage(self, step: int, n_latent: int) -> int:
        """Number of deltas trained at `step` (0 = the shared code only)."""
        if step < self.start:
            return 0
        return min(1 + (step - self.start) // self.every, n_latent - 1)


def init_backbone(encoder: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Start the encoder's IR-SE input layer and body from an ArcFace IR-SE50 state dict
    (as e4e/pSp do); the feature pyramid and style heads keep their initialisation."""
    from vrfam_rt.bundle import check_state

    parts = ("input_layer.", "body.")
    net = encoder.encoder
    expected = {k: v for k, v in net.state_dict().items() if k.startswith(parts)}
    got = {k: v.to(expected[k].dtype) if k in expected else v
           for k, v in state.items() if k.startswith(parts)}
    check_state(expected, got, source, optional=("num_batches_tracked",))
    net.load_state_dict(got, strict=False)


def freeze_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class EncoderTask(Task):
    """Train the bundle's encoder (a fresh one if it has none) and a latent discriminator."""

    component = "encoder"

    def __init__(self, bundle: Bundle, images: ImageFolder | None, lpips: nn.Module | None,
                 arcface: nn.Module | None, weights: EncoderLoss, progressive: Progressive,
                 options: RunOptions, ranks: Ranks):
        device = ranks.device
        self.source, self.images, self.weights = bundle, images, weights
        self.options, self.ranks, self.progressive = options, ranks, progressive
        self.generator = frozen(bundle.generator).to(device)
        self.lpips = None if lpips is None else lpips.to(device)
        self.arcface = None if arcface is None else arcface.to(device)
        config = bundle.config
        if "encoder" in bundle.modules:
            self.encoder = bundle.encoder
            self.continued = ("encoder",)
        else:
            self.encoder = models.build(config, "encoder")
            w_avg = self.generator.mean_latent(4096, seed=options.seed).cpu()
            self.encoder.latent_avg.copy_(w_avg.expand_as(self.encoder.latent_avg))
        self.encoder.to(device).train()
        freeze_batchnorm(self.encoder)
        self.network_config = self.encoder.encoder.config
        self.adversarial = weights.adv > 0
        self.discriminator = (bundle.modules.get("discriminator")
                              or models.build(config, "discriminator")).to(device).train()
        self.networks = {"encoder": self.encoder, "discriminator": self.discriminator}
        self.optimizers = {
            "encoder": torch.optim.Adam(self.encoder.parameters(), lr=options.lr,
                                        betas=(0.95, 0.999)),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=weights.d_lr)}
        self.active = {"l2": weights.l2 > 0,
                       "lpips": self.lpips is not None and weights.perceptual > 0,
                       "id": self.arcface is not None and weights.id > 0, "reg": weights.reg > 0,
                       "adv": self.adversarial, "d": self.adversarial, "r1": self.adversarial}
        self.terms = tuple(t for t, on in self.active.items() if on)

    @property
    def trained(self) -> tuple[str, ...]:
        return ("encoder", "discriminator") if self.adversarial else ("encoder",)

    def set_stage(self, stage: int | None) -> None:
        self.encoder.encoder.config = dataclasses.replace(self.network_config,
                                                          progressive_stage=stage)

    def batch(self, step: int) -> torch.Tensor:
        """This rank's images [b,3,S,S] of global batch `step`."""
        o, size = self.options, self.encoder.input_size
        part = self.ranks.shard(o.batch)
        if self.images is not None:
            idx = batch_indices(len(self.images), o.batch, step, o.seed)[part]
            return self.images.batch(idx).to(self.ranks.device)
        w = sample_w(self.generator, o.batch, step_generator(o.seed, step))[part]
        with torch.no_grad():
            return resize(self.generator(w[:, None].expand(-1, self.generator.n_latent, -1)), size)

    def _discriminator_step(self, step: int, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D update on real mapping(z) codes vs the encoder's codes fake [n,D]."""
        o, wt = self.options, self.weights
        real = sample_w(self.generator, o.batch, step_generator(o.seed, step, stream=2))
        real = real[self.ranks.shard(o.batch)]                              # [b,D]
        d = self.discriminator
        d.requires_grad_(True)
        loss = nonsaturating(d(real), real=True) + nonsaturating(d(fake), real=False)
        terms = {"d": loss, "r1": torch.tensor(float("nan"))}
        if step % wt.d_reg_every == 0:
            terms["r1"] = r1_penalty(d, real)
            loss = loss + wt.r1 / 2 * terms["r1"] * wt.d_reg_every
        optimise(self.optimizers["discriminator"], loss, self.ranks)
        d.requires_grad_(False)
        return terms

    def step(self, step: int) -> dict[str, float]:
        wt = self.weights
        stage = self.progressive.stage(step, self.generator.n_latent)
        self.set_stage(stage)
        x = self.batch(step)                                              # [b,3,S,S]
        codes = self.encoder(x)                                             # [b,L,D]
        active = codes[:, :stage + 1]                                       # [b,stage+1,D]
        terms: dict[str, torch.Tensor] = {}
        if self.adversarial:
            terms |= self._discriminator_step(step, active.detach().flatten(0, 1))
        y_hat = resize(self.generator(codes), x.shape[-1])                  # [b,3,S,S]
        weighted = {"l2": (wt.l2, lambda: F.mse_loss(y_hat, x)),
                    "lpips": (wt.perceptual, lambda: self.lpips(y_hat, x).mean()),
                    "id": (wt.id, lambda: identity_loss(self.arcface, x, y_hat)),
                    "reg": (wt.reg, lambda: (active[:, 1:] - active[:, :1]).norm(dim=2)
                            .sum(1).mean()),
                    "adv": (wt.adv, lambda: nonsaturating(
                        self.discriminator(active.flatten(0, 1)), real=True))}
        loss = 0
        for name, (weight, term) in weighted.items():
            if self.active[name]:
                terms[name] = term()
                loss = loss + weight * terms[name]
        optimise(self.optimizers["encoder"], loss, self.ranks)
        return {"loss": float(loss.detach())} | {k: float(terms[k].detach()) for k in self.terms}

    def bundle(self) -> Bundle:
        """The input bundle plus the encoder (with deltas up to the stage reached)."""
        stage = self.progressive.stage(self.options.steps - 1, self.generator.n_latent)
        final = None if stage >= self.generator.n_latent - 1 else stage
        self.set_stage(final)
        config = self.source.config.replace(encoder=dataclasses.replace(
            self.source.config.encoder, progressive_stage=final))
        modules = dict(self.source.modules) | {"encoder": self.encoder.cpu()}
        if self.adversarial:
            modules["discriminator"] = self.discriminator.cpu()
        return Bundle(config, modules, self.source.provenance)
