"""Latent transformer T_k(w, alpha) = w + alpha f_k(w) for one attribute (paper eq. 4, 6-8, 10).

Losses on a batch of W+ codes w with the frozen classifier C and k the attribute:
- cls  (eq. 6): BCE of C(T(w, alpha))[k] toward the target label;
- attr (eq. 7): sum_{i != k} (1 - |gamma_ik|) mean |sigmoid C(T(w))_i - sigmoid C(w)_i|,
  gamma the correlation matrix of the training labels;
- id   (eq. 8): 1 - <R(G(w)), R(G(T(w)))> through the frozen generator and ArcFace;
- latent: mean (T(w) - w)^2, the released latent-transformer code's latent
  reconstruction term (its weight there: 10). The paper leaves it out (weight 0, the
  default) and relies on the identity term to keep edits small; without ArcFace
  (--no-identity) nothing else bounds how far T moves a code.
L_T = lambda_cls cls + lambda_attr attr + lambda_id id + lambda_latent latent
(1, 1, 1, 0 in the paper).

How alpha is drawn (`alpha_mode`):
- "released" (default, as the released latent-transformer code): p = sigmoid C(w)[k];
  alpha = -p where p > 0.5, else 1 - p; the target is the flipped label. A positive
  alpha adds the attribute, a negative one removes it, as `vrfam-rt edit` uses it.
- "uniform": alpha ~ U(-1.5, 1.5), the paper's test range; target = 1 if alpha > 0 else 0.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from vrfam_rt import models
from vrfam_rt.bundle import Bundle
from vrfam_rt.errors import VrfamError, argument
from vrfam_rt.training.core import (RunOptions, Ranks, Task, batch_indices, optimise,
                                    step_generator)
from vrfam_rt.training.data import LatentDataset, sample_w
from vrfam_rt.training.losses import frozen, identity_loss

ALPHA_RANGE = 1.5
CORRELATION_SAMPLES = 4096   # generator data: codes whose predicted labels give gamma


@dataclasses.dataclass(frozen=True)
class TransformerLoss:
    cls: float = 1.0
    attr: float = 1.0
    id: float = 1.0
    latent: float = 0.0


class TransformerTask(Task):
    """Train f_attr of a FusedTransformer; the bundle's other transformers are kept."""

    component = "transformer"

    def __init__(self, bundle: Bundle, data: LatentDataset | None, attr: str, method: str | None,
                 alpha_mode: str, arcface, weights: TransformerLoss, options: RunOptions,
                 ranks: Ranks):
        device = ranks.device
        self.source, self.data, self.attr = bundle, data, attr
        self.options, self.ranks, self.weights = options, ranks, weights
        self.alpha_mode = alpha_mode
        self.classifier = frozen(bundle.classifier).to(device)
        names = self.classifier.attributes
        if attr not in names:
            raise VrfamError(f"{argument('attr', attr)}: the bundle's classifier does not "
                             "predict it "
                             f"(it predicts {', '.join(names)}); train a classifier first")
        self.k = names.index(attr)
        self.arcface = arcface
        self.generator = frozen(bundle.generator).to(device) if arcface is not None else None
        self.config, self.transformer = self._transformer(bundle, attr, method)
        self.transformer.to(device).train()
        self.edit = self.transformer.transforms[attr]
        gamma = self._correlation(names)
        self.keep = (1 - gamma[self.k].abs()).index_fill(0, torch.tensor([self.k]), 0).to(device)
        self.networks = {"transformer": self.transformer}
        self.optimizers = {"transformer": torch.optim.Adam(self.edit.parameters(), lr=options.lr)}
        self.active = {"cls": True, "attr": True, "id": arcface is not None,
                       "latent": weights.latent > 0}
        self.terms = tuple(t for t, on in self.active.items() if on)

    @property
    def trained(self) -> tuple[str, ...]:
        return (f"transformer.{self.attr}",)

    @staticmethod
    def _transformer(bundle: Bundle, attr: str, method: str | None):
        """A FusedTransformer with `attr` (fresh f) beside the bundle's other attributes."""
        methods = dict(bundle.transformer_methods)
        return with_fresh_edits(bundle, {attr: method or methods.get(
            attr, bundle.config.transformer.method)})

    @torch.no_grad()
    def _correlation(self, names: tuple[str, ...]) -> torch.Tensor:
        """gamma [A,A]: label correlations of the data (or of C's labels on generator codes)."""
        if self.data is not None:
            return self.data.correlation(names)
        generator = self.source.generator
        w = sample_w(generator, CORRELATION_SAMPLES,
                     step_generator(self.options.seed, 0, stream=7)).to(self.ranks.device)
        labels = (self.classifier(w[:, None].expand(-1, generator.n_latent, -1)) > 0).float()
        return LatentDataset(w.cpu(), labels.cpu(), names).correlation(names)

    def batch(self, step: int) -> torch.Tensor:
        """This rank's W+ codes [b,L,D] of global batch `step`."""
        o = self.options
        part = self.ranks.shard(o.batch)
        if self.data is not None:
            idx = batch_indices(len(self.data), o.batch, step, o.seed)[part]
            return self.data.wplus[idx].to(self.ranks.device)
        generator = self.source.generator
        w = sample_w(generator, o.batch, step_generator(o.seed, step))[part]
        return w[:, None].expand(-1, generator.n_latent, -1).to(self.ranks.device)

    def _alpha(self, p: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha [b], target label [b]) from the current probabilities p [b] of the attribute."""
        if self.alpha_mode == "released":
            has = p > 0.5
            return torch.where(has, -p, 1 - p), (~has).float()
        o = self.options
        u = torch.rand(o.batch, generator=step_generator(o.seed, step, stream=1))
        alpha = ((2 * u - 1) * ALPHA_RANGE)[self.ranks.shard(o.batch)].to(p.device)
        return alpha, (alpha > 0).float()

    def step(self, step: int) -> dict[str, float]:
        w = self.batch(step)                                       # [b,L,D]
        with torch.no_grad():
            p0 = torch.sigmoid(self.classifier(w))                  # [b,A]
        alpha, target = self._alpha(p0[:, self.k], step)
        alphas = torch.zeros(len(w), len(self.transformer.attributes), device=w.device)
        alphas[:, self.transformer.attributes.index(self.attr)] = alpha
        edited = self.transformer(w, alphas)                        # [b,L,D]
        logits = self.classifier(edited)
        terms = {"cls": F.binary_cross_entropy_with_logits(logits[:, self.k], target),
                 "attr": ((torch.sigmoid(logits) - p0).abs() * self.keep).sum(1).mean()}
        if self.arcface is not None:
            with torch.no_grad():
                original = self.generator(w)
            terms["id"] = identity_loss(self.arcface, original, self.generator(edited))
        if self.weights.latent > 0:
            terms["latent"] = F.mse_loss(edited, w)
        loss = sum(getattr(self.weights, k) * v for k, v in terms.items())
        optimise(self.optimizers["transformer"], loss, self.ranks)
        return {"loss": loss.item()} | {k: v.item() for k, v in terms.items()}

    def bundle(self) -> Bundle:
        modules = dict(self.source.modules) | {"transformer": self.transformer.cpu()}
        return Bundle(self.config, modules, self.source.provenance)


def with_fresh_edits(bundle: Bundle, fresh: dict[str, str]):
    """(config, FusedTransformer): the bundle's transformer with freshly initialised edits
    for the attributes of `fresh` ({attribute: method}; added after the bundle's own, or
    replacing them) and every other attribute's edit kept as trained."""
    config = bundle.config
    attributes = tuple(config.transformer.attributes)
    attributes += tuple(a for a in fresh if a not in attributes)
    methods = dict(bundle.transformer_methods) | fresh
    config = config.replace(transformer=dataclasses.replace(config.transformer,
                                                            attributes=attributes))
    transformer = models.build(config, "transformer", transformer_methods=methods)
    if "transformer" in bundle.modules:
        kept = {k: v for k, v in bundle.transformer.state_dict().items()
                if not k.startswith(tuple(f"transforms.{a}." for a in fresh))}
        transformer.load_state_dict(kept, strict=False)
    return config, transformer
