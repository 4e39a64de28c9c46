"""InterFaceGAN boundaries: a linear SVM per attribute on W codes (the paper's linear baseline).

Data:
- generator: `samples` W codes = mapping(z); each attribute's score is the bundle
  classifier's logit on the code repeated to W+; the top and bottom `ratio` of the
  scores are the positives and negatives (InterFaceGAN's recipe);
- a latent dataset: the W+ codes averaged over layers, labelled by the attribute file.
Each attribute's samples are split 70/30 (train/validation), standardised with the
train statistics, and fit by a linear SVM (squared hinge, L2, C = 1, the LinearSVC
objective) with full-batch Adam: convex and deterministic. n = coef / ||coef||.

Conditional manipulation: n' = n - x^T C with (C C^T) x = C n^T, C the condition
boundaries [m,D], renormalised.

The bundle gets each boundary as a linear transformer: f(w) = distance * n on the
edited layers, so `edit --attr NAME=ALPHA` moves W+ by alpha * distance along n.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from vrfam_rt.bundle import Bundle
from vrfam_rt.errors import VrfamError
from vrfam_rt.training.core import RunOptions, Ranks, Task, step_generator
from vrfam_rt.training.data import LatentDataset, sample_w
from vrfam_rt.training.transformer import with_fresh_edits

SVM_C = 1.0
TRAIN_SPLIT = 0.7


@dataclasses.dataclass
class Split:
    """One attribute's standardised samples."""

    x: torch.Tensor          # train codes [n,D], standardised
    y: torch.Tensor          # train labels [n] in {-1,+1}
    x_val: torch.Tensor
    y_val: torch.Tensor
    mean: torch.Tensor       # [D] train statistics used to standardise
    std: torch.Tensor


def split(w: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> Split:
    """Shuffle, 70/30 split, standardise with the train part: w [N,D], y [N] in {-1,1}."""
    perm = torch.randperm(len(w), generator=gen)
    w, y = w[perm], y[perm]
    n = int(round(TRAIN_SPLIT * len(w)))
    mean, std = w[:n].mean(0), w[:n].std(0).clamp_min(1e-6)
    return Split((w[:n] - mean) / std, y[:n], (w[n:] - mean) / std, y[n:], mean, std)


def svm_objective(coef: torch.Tensor, bias: torch.Tensor, x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
    """LinearSVC's 0.5 ||coef||^2 + C sum max(0, 1 - y (x.coef + b))^2, divided by n."""
    margin = y * (x @ coef + bias)
    return 0.5 * coef.pow(2).sum() / len(x) + SVM_C * F.relu(1 - margin).pow(2).mean()


def condition(n: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """n [D] with the directions of `conditions` [m,D] projected out, renormalised."""
    x = torch.linalg.solve(conditions @ conditions.T, conditions @ n)
    out = n - x @ conditions
    return out / out.norm()


class BoundaryTask(Task):
    """One SVM per attribute, all optimised together; every rank fits the whole problem."""

    component = "transformer"

    def __init__(self, bundle: Bundle, data: LatentDataset | None, attrs: tuple[str, ...],
                 conditions: tuple[str, ...], samples: int, ratio: float, distance: float,
                 options: RunOptions, ranks: Ranks):
        self.source, self.options, self.ranks = bundle, options, ranks
        self.attrs, self.conditions, self.distance = attrs, conditions, distance
        fitted = tuple(dict.fromkeys(attrs + conditions))
        self.fitted = fitted
        w, labels = self._labelled(bundle, data, fitted, samples, options.seed)
        self.splits = {}
        for j, attr in enumerate(fitted):
            gen = step_generator(options.seed, 0, stream=10 + j)
            if data is None:
                order = labels[:, j].argsort()
                m = max(1, int(ratio * len(w)))
                pick = torch.cat([order[:m], order[-m:]])
                y = torch.cat([-torch.ones(m), torch.ones(m)])
                self.splits[attr] = split(w[pick], y, gen)
            else:
                self.splits[attr] = split(w, labels[:, j] * 2 - 1, gen)
            if self.splits[attr].y.unique().numel() < 2:
                raise VrfamError(f"attribute {attr}: the training samples hold one class only; "
                                 "give more data")
        dim = w.shape[1]
        self.coef = torch.nn.Parameter(torch.zeros(len(fitted), dim))
        self.bias = torch.nn.Parameter(torch.zeros(len(fitted)))
        self.params = torch.nn.ParameterDict({"coef": self.coef, "bias": self.bias})
        self.networks = {"svm": self.params}
        self.optimizers = {"svm": torch.optim.Adam(self.params.parameters(), lr=options.lr)}
        self.terms = tuple(f"svm_{a}" for a in fitted)

    @property
    def trained(self) -> tuple[str, ...]:
        return tuple(f"transformer.{a}" for a in self.attrs)

    @staticmethod
    @torch.no_grad()
    def _labelled(bundle: Bundle, data: LatentDataset | None, attrs: tuple[str, ...],
                  samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(W codes [N,D], scores or labels [N,len(attrs)])."""
        if data is not None:
            return data.wplus.mean(1), data.columns(attrs, "boundary")
        classifier = bundle.classifier
        missing = [a for a in attrs if a not in classifier.attributes]
        if missing:
            raise VrfamError(f"attribute {missing[0]}: the bundle's classifier does not predict it "
                             f"(it predicts {', '.join(classifier.attributes)})")
        generator = bundle.generator
        w = sample_w(generator, samples, step_generator(seed, 0, stream=9)).cpu()
        scores = torch.cat([classifier(c[:, None].expand(-1, generator.n_latent, -1))
                            for c in w.split(1024)])
        return w, scores[:, [classifier.attributes.index(a) for a in attrs]]

    def step(self, step: int) -> dict[str, float]:
        terms = {f"svm_{a}": svm_objective(self.coef[j], self.bias[j], s.x, s.y)
                 for j, (a, s) in enumerate(self.splits.items())}
        loss = sum(terms.values())
        opt = self.optimizers["svm"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()} | {k: v.item() for k, v in terms.items()}

    @torch.no_grad()
    def boundaries(self) -> dict[str, torch.Tensor]:
        """Unit normals [D] in the raw W space, per fitted attribute (unconditioned)."""
        out = {}
        for j, (attr, s) in enumerate(self.splits.items()):
            raw = self.coef[j] / s.std
            out[attr] = raw / raw.norm().clamp_min(1e-12)
        return out

    @torch.no_grad()
    def summary(self) -> dict[str, float]:
        """Validation accuracy of each SVM."""
        return {f"val_accuracy_{a}": ((s.x_val @ self.coef[j] + self.bias[j]).sign() == s.y_val)
                .float().mean().item() for j, (a, s) in enumerate(self.splits.items())}

    @torch.no_grad()
    def edits(self) -> dict[str, torch.Tensor]:
        """The boundary each trained attribute edits along: conditioned when asked."""
        normals = self.boundaries()
        out = {}
        for attr in self.attrs:
            others = [normals[c] for c in self.conditions if c != attr]
            out[attr] = condition(normals[attr], torch.stack(others)) if others else normals[attr]
        return out

    @torch.no_grad()
    def bundle(self) -> Bundle:
        source = self.source
        config, transformer = with_fresh_edits(source, {a: "linear" for a in self.attrs})
        for attr, n in self.edits().items():
            for layer in transformer.transforms[attr].dense:
                layer.weight.zero_()
                layer.bias.copy_(self.distance * n)
        return Bundle(config, dict(source.modules) | {"transformer": transformer},
                      source.provenance)
