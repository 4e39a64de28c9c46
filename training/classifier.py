"""Latent classifier C: W+ -> attribute logits, trained with binary cross-entropy (paper 2.2)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from vrfam_rt import models
from vrfam_rt.bundle import Bundle
from vrfam_rt.errors import VrfamError
from vrfam_rt.training.core import RunOptions, Ranks, Task, batch_indices, optimise
from vrfam_rt.training.data import LatentDataset


@torch.no_grad()
def oracle_mixes(data: LatentDataset, generator, oracle, n: int, seed: int, reach: float = 0.5,
                 batch: int = 256) -> LatentDataset:
    """`data` and n more codes, each a random point on the line through two of its codes
    (every layer alike; from `reach` before the first to `reach` past the second, in
    units of their distance), labelled by `oracle` reading the generator's image of it.

    Codes of encoded faces lie apart; a classifier that only saw them can call a code
    between a brown- and a black-haired face black while its image is still brown, and a
    transformer trained against it stops there. The mixes show the classifier where the
    image changes. The oracle must name every label column of `data` (procedural faces:
    the training oracle, never the judge that scores `eval`). The default reach (half
    the distance beyond either code) is what the build uses; issue 15's experiments are in
    benchmarks/results/smile-diagnosis-default.md.
    """
    from vrfam_rt.synthetic.faces import ATTRIBUTES

    missing = [a for a in data.attributes if a not in ATTRIBUTES]
    if missing:
        raise VrfamError(f"`oracle_mixes=True`: the procedural faces' oracle has no {missing[0]}")
    columns = [ATTRIBUTES.index(a) for a in data.attributes]
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randint(len(data), (n, 2), generator=g)
    t = torch.rand(n, 1, 1, generator=g) * (1 + 2 * reach) - reach
    codes = torch.lerp(data.wplus[pairs[:, 0]], data.wplus[pairs[:, 1]], t)
    device = next(generator.parameters()).device
    labels = torch.cat([(oracle(generator(part.to(device)))[:, columns] > 0).float().cpu()
                        for part in codes.split(batch)])
    return LatentDataset(torch.cat([data.wplus, codes]), torch.cat([data.labels, labels]),
                         data.attributes)


class ClassifierTask(Task):
    """Fresh LCNet over the data's attribute columns; Adam on the mean BCE of a batch.

    When the labels name other attributes than the bundle's classifier config, the
    trained classifier (and the written bundle's config) takes the labels' names.
    """

    component = "classifier"
    terms = ("bce",)

    def __init__(self, bundle: Bundle, data: LatentDataset, options: RunOptions, ranks: Ranks):
        config = bundle.config
        if data.attributes != tuple(config.classifier.attributes):
            config = config.replace(classifier=dataclasses.replace(
                config.classifier, attributes=data.attributes))
        self.config, self.source, self.data = config, bundle, data
        self.options, self.ranks = options, ranks
        self.classifier = models.build(config, "classifier").train().to(ranks.device)
        self.networks = {"classifier": self.classifier}
        self.optimizers = {"classifier": torch.optim.Adam(self.classifier.parameters(),
                                                          lr=options.lr)}

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (W+ codes [b,L,D], labels [b,A]) of global batch `step`."""
        o = self.options
        idx = batch_indices(len(self.data), o.batch, step, o.seed)[self.ranks.shard(o.batch)]
        device = self.ranks.device
        return self.data.wplus[idx].to(device), self.data.labels[idx].to(device)

    def step(self, step: int) -> dict[str, float]:
        wplus, labels = self.batch(step)                             # [b,L,D], [b,A]
        bce = F.binary_cross_entropy_with_logits(self.classifier(wplus), labels)
        optimise(self.optimizers["classifier"], bce, self.ranks)
        return {"loss": bce.item(), "bce": bce.item()}

    @torch.no_grad()
    def summary(self) -> dict[str, float]:
        """Accuracy of the thresholded logits over the whole training set."""
        self.classifier.eval()
        hits = sum(((self.classifier(w.to(self.ranks.device)) > 0).float().cpu() == y).sum()
                   for w, y in zip(self.data.wplus.split(256), self.data.labels.split(256)))
        return {"train_accuracy": float(hits) / self.data.labels.numel()}

    def bundle(self) -> Bundle:
        modules = dict(self.source.modules) | {"classifier": self.classifier.cpu()}
        return Bundle(self.config, modules, self.source.provenance)
