"""A StyleGAN2 generator distilled from the procedural renderer (vrfam_rt/synthetic/faces.py).

`params_from_noise` maps z ~ N(0, I) to face parameters, so the renderer is itself a
generator z -> image. The StyleGAN2 generator learns to copy it: per step, for fresh
seeded z [b,D],
    x = render(params_from_noise(z))                      the target   [b,3,S,S]
    y = G(mapping(z) broadcast to all W+ layers)          the student  [b,3,S,S]
    loss = l1 |y - x| + multiscale (|pool2(y - x)| + |pool4(y - x)|)
           + feature sum_k |F_k(y) - F_k(x)|
with F_k the four stages of the frozen attribute oracle (vrfam_rt/synthetic/oracles.py), a
perceptual term that needs no outside weights. The mapping network is trained too,
so the result is an ordinary StyleGAN2 (mean W, W+ editing) whose W space is
organised by the renderer's parameters.

`oracle_agreement` judges a generator: the shipped attribute oracle's verdicts on its
samples against the attributes of params_from_noise(z) for held-out z.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from vrfam_rt.bundle import Bundle
from vrfam_rt.errors import VrfamError
from vrfam_rt.training.core import RunOptions, Ranks, Task, optimise, step_generator
from vrfam_rt.training.losses import frozen
from vrfam_rt.synthetic.oracles import AttributeOracle
from vrfam_rt.synthetic.faces import ATTRIBUTES, NOISE_DIMS, params_from_noise, render

EVAL_SEED = 2**41          # held-out z for oracle_agreement; training draws step_generator's


@dataclasses.dataclass(frozen=True)
class DistillLoss:
    """Weights of the distillation terms (0 leaves a term out)."""

    l1: float = 1.0
    multiscale: float = 1.0
    feature: float = 1.0


def oracle_features(oracle: AttributeOracle, images: torch.Tensor) -> list[torch.Tensor]:
    """Activations after each of the oracle's four conv blocks: [b,C_k,S/2^k,S/2^k]."""
    if images.shape[-1] != oracle.input_size:
        images = F.interpolate(images, size=(oracle.input_size,) * 2, mode="bilinear",
                               antialias=True, align_corners=False)
    out, x = [], images
    for layer in oracle.features:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            out.append(x)
    return out


class OraclePerceptual(nn.Module):
    """A perceptual distance for the procedural faces: images [B,3,S,S] in [-1,1] (x2) ->
    [B], the squared difference of the training attribute oracle's channel-normalised
    features, averaged per level and summed over its four levels (LPIPS without learned
    heads). The oracle learned to see mouths and glasses, so this term weighs a smile as
    pixel L2 cannot; it is the first oracle's, never the judge's, which scores `eval`."""

    def __init__(self, oracle: AttributeOracle):
        super().__init__()
        self.oracle = frozen(oracle)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = 0
        for fa, fb in zip(oracle_features(self.oracle, a), oracle_features(self.oracle, b)):
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + (fa - fb).pow(2).sum(1).mean(dim=(1, 2))
        return total


def distill_terms(y: torch.Tensor, x: torch.Tensor,
                  target_features: list[torch.Tensor] | None,
                  oracle: AttributeOracle | None) -> dict[str, torch.Tensor]:
    """The loss terms of generated y [b,3,S,S] against renders x [b,3,S,S]."""
    diff = y - x
    terms = {"l1": diff.abs().mean(),
             "multiscale": F.avg_pool2d(diff, 2).abs().mean() + F.avg_pool2d(diff, 4).abs().mean()}
    if oracle is not None:
        terms["feature"] = sum((a - b).abs().mean()
                               for a, b in zip(oracle_features(oracle, y), target_features))
    return terms


def generate(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """z [b,D] -> G(mapping(z)) with one W for every layer: [b,3,size,size]."""
    w = generator.mapping(z)
    return generator(w[:, None].expand(-1, generator.n_latent, -1))


@torch.no_grad()
def oracle_agreement(generator: nn.Module, oracle: AttributeOracle, n: int = 2000,
                     seed: int = EVAL_SEED, chunk: int = 250,
                     judge: AttributeOracle | None = None) -> dict:
    """How well G's samples show the attributes the renderer would draw for the same z.

    For n seeded z: per-attribute accuracy of the oracle on G's samples against the
    attributes of params_from_noise(z), their mean, the oracle's own accuracy on the
    renders of the same z (the ceiling), and the pixel L1 between samples and renders.
    With a `judge` (a second oracle that took no part in training) the same for it:
    `judge_agreement`, the figure that counts when the first oracle trained G.
    """
    nets = {"oracle": oracle} | ({"judge": judge} if judge is not None else {})
    was_training = generator.training
    generator.eval()
    z = torch.randn(n, generator.config.style_dim, generator=torch.Generator().manual_seed(seed))
    device = generator.input.input.device
    hits_g, hits_r, l1 = dict.fromkeys(nets, 0), dict.fromkeys(nets, 0), 0.0
    for i in range(0, n, chunk):
        zc = z[i:i + chunk]
        params = params_from_noise(zc)
        x = render(params, generator.config.size)
        y = generate(generator, zc.to(device)).cpu()
        truth = params.attributes
        for key, net in nets.items():
            hits_g[key] = hits_g[key] + ((net(y) > 0).float() == truth).float().sum(0)
            hits_r[key] = hits_r[key] + ((net(x) > 0).float() == truth).float().sum(0)
        l1 += (y - x).abs().mean().item() * len(zc)
    generator.train(was_training)

    def scores(key):      # (mean agreement, mean render accuracy, per attribute)
        agree, ceiling = hits_g[key] / n, hits_r[key] / n
        return agree.mean().item(), ceiling.mean().item(), {
            a: {"agreement": agree[k].item(), "render_accuracy": ceiling[k].item()}
            for k, a in enumerate(ATTRIBUTES)}

    agree, ceiling, per_attribute = scores("oracle")
    report = {"n": n, "seed": seed, "mean_agreement": agree, "mean_render_accuracy": ceiling,
              "pixel_l1": l1 / n, "attributes": per_attribute}
    if judge is not None:
        agree, ceiling, per_attribute = scores("judge")
        report |= {"judge_agreement": agree, "judge_render_accuracy": ceiling,
                   "judge_attributes": per_attribute}
    return report


class GeneratorTask(Task):
    """Distil the renderer into the bundle's generator (trained from its current weights)."""

    component = "generator"

    def __init__(self, bundle: Bundle, oracle: AttributeOracle, weights: DistillLoss,
                 eval_samples: int, options: RunOptions, ranks: Ranks,
                 lr_final: float = 0.05, judge: AttributeOracle | None = None):
        config = bundle.config.generator
        if config.style_dim < NOISE_DIMS:
            raise VrfamError(f"config {bundle.config.name}: style_dim {config.style_dim} is "
                             f"below the {NOISE_DIMS} noise dims the renderer reads; use a "
                             f"config with style_dim >= {NOISE_DIMS}")
        self.source, self.weights, self.eval_samples = bundle, weights, eval_samples
        self.lr_final, self.judge = lr_final, judge
        self.options, self.ranks = options, ranks
        self.generator = bundle.generator.to(ranks.device).train()
        self.oracle = frozen(oracle).to(ranks.device)
        self.networks = {"generator": self.generator}
        self.optimizers = {"generator": torch.optim.Adam(self.generator.parameters(),
                                                         lr=options.lr, betas=(0.9, 0.99))}
        self.active = {"l1": weights.l1 > 0, "multiscale": weights.multiscale > 0,
                       "feature": weights.feature > 0}
        self.terms = tuple(t for t, on in self.active.items() if on)
        self.metrics: dict = {}

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (z [b,D], renders [b,3,S,S]) of global batch `step`."""
        o, g = self.options, self.generator.config
        z = torch.randn(o.batch, g.style_dim, generator=step_generator(o.seed, step))
        z = z[self.ranks.shard(o.batch)]
        x = render(params_from_noise(z), g.size)
        return z.to(self.ranks.device), x.to(self.ranks.device)

    def learning_rate(self, step: int) -> float:
        """Cosine decay from --lr to lr_final * lr over the run (a function of the step
        alone, so a resumed run follows the same schedule)."""
        progress = min(step / self.options.steps, 1.0)
        return self.options.lr * (self.lr_final + (1 - self.lr_final)
                                  * 0.5 * (1 + math.cos(math.pi * progress)))

    def step(self, step: int) -> dict[str, float]:
        for group in self.optimizers["generator"].param_groups:
            group["lr"] = self.learning_rate(step)
        z, x = self.batch(step)
        oracle = self.oracle if self.active["feature"] else None
        with torch.no_grad():
            target = oracle_features(oracle, x) if oracle is not None else None
        terms = distill_terms(generate(self.generator, z), x, target, oracle)
        loss = sum(getattr(self.weights, t) * terms[t] for t in self.terms)
        optimise(self.optimizers["generator"], loss, self.ranks)
        return {"loss": float(loss.detach())} | {t: float(terms[t].detach()) for t in self.terms}

    def summary(self) -> dict[str, float]:
        self.metrics = oracle_agreement(self.generator.cpu(), self.oracle.cpu(), self.eval_samples,
                                        judge=self.judge)
        judged = {"judge_agreement": self.metrics["judge_agreement"]} if self.judge else {}
        return {"oracle_agreement": self.metrics["mean_agreement"], **judged,
                "pixel_l1": self.metrics["pixel_l1"]}

    def bundle(self) -> Bundle:
        """The input bundle with the trained generator; an encoder's latent_avg follows
        the new mean W (as Bundle.random sets it)."""
        generator = self.generator.cpu().eval()
        modules = dict(self.source.modules) | {"generator": generator}
        if "encoder" in modules:
            w_avg = generator.mean_latent(4096, seed=self.options.seed)            # [1,D]
            modules["encoder"].latent_avg.copy_(w_avg.expand_as(modules["encoder"].latent_avg))
        return Bundle(self.source.config, modules, self.source.provenance)


@torch.no_grad()
def comparison_images(generator: nn.Module, n: int = 8, seed: int = EVAL_SEED) -> torch.Tensor:
    """Renders of n held-out z followed by G's samples of the same z: [2n,3,S,S] in [-1,1]
    (for `contact_sheet(..., columns=n)`: renders above, samples below)."""
    z = torch.randn(n, generator.config.style_dim, generator=torch.Generator().manual_seed(seed))
    was_training = generator.training
    generated = generate(generator.eval(), z.to(generator.input.input.device)).cpu()
    generator.train(was_training)
    return torch.cat([render(params_from_noise(z), generator.config.size), generated.clamp(-1, 1)])
