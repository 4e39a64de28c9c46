"""Oracles for synthetic faces: an attribute classifier and an identity embedding.

Both are small CNNs trained on renders from `vrfam_rt/synthetic/faces.py`, whose labels are
known exactly, so they can later judge edits of a generator trained on the same
renders: did the attribute flip (attribute oracle), and is it still the same person
(identity embedding, cosine similarity)?

Training draws fresh renders every step (seeded by `seed` and the step), so no
render is seen twice; evaluation uses a fixed held-out seed no training run uses.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import atomic_file, write_json_atomic
from vrfam_rt.synthetic.faces import ATTRIBUTES, IDENTITY_FIELDS, render, sample_params

EVAL_SEED = 2**40          # held-out renders; training seeds are seed * 2**20 + step
WEIGHTS = {"attributes": "attribute_oracle.safetensors",
           "identity": "identity_embedding.safetensors"}
REPORT = "oracle.json"
JUDGE, JUDGE_REPORT = "judge_attribute_oracle.safetensors", "judge.json"


class ConvNet(nn.Module):
    """[N,3,S,S] in [-1,1] -> [N, outputs]; any S is resized to `input_size` first.

    Four stride-2 3x3 convolutions (BatchNorm, LeakyReLU) take 64 px to 4x4, whose
    flattened features (positions kept: hair is above, beard below) feed a linear head.
    """

    def __init__(self, outputs: int, width: int = 24, input_size: int = 64):
        super().__init__()
        self.input_size = input_size
        widths = (3, width, 2 * width, 4 * width, 4 * width)
        layers = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * (input_size // 16) ** 2, outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size),
                                   mode="bilinear", antialias=True, align_corners=False)
        return self.head(self.features(images).flatten(1))


class AttributeOracle(ConvNet):
    """Images -> logits [N, len(ATTRIBUTES)] (positive = attribute present)."""

    def __init__(self, width: int = 24):
        super().__init__(len(ATTRIBUTES), width)


class IdentityEmbedding(ConvNet):
    """Images -> unit vectors [N, dim]; cosine similarity is high for one person.

    `regress` reads the identity parameters off the unnormalised embedding; it only
    serves training (a dense signal beside the contrastive loss).
    """

    def __init__(self, dim: int = 64, width: int = 24):
        super().__init__(dim, width)
        self.regress = nn.Linear(dim, len(IDENTITY_FIELDS))

    def unnormalised(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.unnormalised(images), dim=1)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch: int = 64             # images per step (identity: batch // 2 people, 2 views)
    lr: float = 2e-3
    seed: int = 0
    size: int = 64              # render size fed to the network
    temperature: float = 0.1    # identity: softmax temperature of the contrastive loss
    regression: float = 10.0    # identity: weight of the identity-parameter regression


def _training_batch(config: TrainConfig, step: int, views: int):
    params = sample_params(config.batch, seed=config.seed * 2**20 + step, views=views)
    return params, render(params, config.size)


def _fit(model: nn.Module, loss_fn: Callable, config: TrainConfig, views: int,
         log: Callable[[int, float], None] | None) -> nn.Module:
    """Adam with a cosine-decayed rate over fresh renders; returns the model in eval mode.

    loss_fn(model, images [N,3,S,S], params: FaceParams) -> scalar loss. Nothing here
    draws from torch's global generator; the callers seed the model's initialisation.
    """
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    model.train()
    for step in range(config.steps):
        params, images = _training_batch(config, step, views)
        loss = loss_fn(model, images, params)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log and (step % 100 == 0 or step == config.steps - 1):
            log(step, loss.item())
    return model.eval()


def train_attribute_oracle(config: TrainConfig = TrainConfig(), log=None) -> AttributeOracle:
    """Multi-label BCE on fresh renders."""
    torch.manual_seed(config.seed)
    model = AttributeOracle()
    def loss(model, images, params):
        return F.binary_cross_entropy_with_logits(model(images), params.attributes)

    return _fit(model, loss, config, views=1, log=log)


def contrastive_loss(embeddings: torch.Tensor, identity_id: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Supervised InfoNCE: each view's other views of the same person against everyone else.

    embeddings: [N, D] unit vectors; identity_id: [N] int64 (each id at least twice).
    """
    logits = embeddings @ embeddings.T / temperature                # [N, N]
    self_mask = torch.eye(len(logits), dtype=torch.bool)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positive = (identity_id[:, None] == identity_id[None, :]) & ~self_mask
    log_prob = logits.log_softmax(1).masked_fill(~positive, 0)
    return -(log_prob.sum(1) / positive.sum(1)).mean()


def train_identity_embedding(config: TrainConfig = TrainConfig(), log=None) -> IdentityEmbedding:
    """Two views per person (attributes, pose, background and light all redrawn);
    contrastive loss plus regression of the identity parameters."""
    torch.manual_seed(config.seed)
    model = IdentityEmbedding()

    def loss(model, images, params):
        raw = model.unnormalised(images)
        return (contrastive_loss(F.normalize(raw, dim=1), params.identity_id, config.temperature)
                + config.regression * F.mse_loss(model.regress(raw), params.identity))

    return _fit(model, loss, config, views=2, log=log)


@torch.no_grad()
def _apply(model: nn.Module, images: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    return torch.cat([model(images[i:i + chunk]) for i in range(0, len(images), chunk)])


@torch.no_grad()
def evaluate_attributes(model: AttributeOracle, n: int = 2000, size: int = 64) -> dict:
    """Per-attribute accuracy on held-out renders, with the majority-class baseline."""
    params = sample_params(n, seed=EVAL_SEED)
    predicted = (_apply(model.eval(), render(params, size)) > 0).float()
    truth = params.attributes
    accuracy = (predicted == truth).float().mean(0)
    majority = torch.maximum(truth.mean(0), 1 - truth.mean(0))
    return {"n": n, "mean_accuracy": accuracy.mean().item(),
            "attributes": {a: {"accuracy": accuracy[i].item(), "majority": majority[i].item(),
                               "positive_rate": truth[:, i].mean().item()}
                           for i, a in enumerate(ATTRIBUTES)}}


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Probability that a random positive score exceeds a random negative one (ties half)."""
    scores = torch.cat([positive, negative])
    _, inverse, counts = scores.unique(return_inverse=True, return_counts=True)
    average_rank = counts.cumsum(0).double() - (counts - 1) / 2   # 1-based, ties averaged
    ranks = average_rank[inverse]
    n_pos, n_neg = len(positive), len(negative)
    return ((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).item()


def best_threshold_accuracy(positive: torch.Tensor, negative: torch.Tensor) -> tuple[float, float]:
    """(accuracy, threshold) of `score > threshold` on balanced positive/negative pairs."""
    candidates = torch.cat([positive, negative]).sort().values
    correct = ((positive[None, :] > candidates[:, None]).float().mean(1)
               + (negative[None, :] <= candidates[:, None]).float().mean(1)) / 2
    best = int(correct.argmax())
    return correct[best].item(), candidates[best].item()


@torch.no_grad()
def evaluate_identity(model: IdentityEmbedding, people: int = 1000, size: int = 64) -> dict:
    """Verification and identification on `people` held-out people, two views each.

    Positive pairs: a person's two views. Negative pairs: view 1 of person i with view 2
    of person i+1 (balanced, for the threshold accuracy) and all cross-person pairs (AUC).
    Rank-1: view 1 finds its own view 2 among all `people` second views.
    """
    params = sample_params(2 * people, seed=EVAL_SEED, views=2)
    e = _apply(model.eval(), render(params, size))
    first, second = e[0::2], e[1::2]                        # [people, D] each
    cosine = first @ second.T                               # [people, people]
    positive = cosine.diagonal()
    shifted = cosine.roll(-1, dims=1).diagonal()
    off_diagonal = cosine[~torch.eye(people, dtype=torch.bool)]
    accuracy, threshold = best_threshold_accuracy(positive, shifted)
    return {"people": people, "verification_accuracy": accuracy, "threshold": threshold,
            "roc_auc": roc_auc(positive, off_diagonal),
            "rank1_identification": (cosine.argmax(1) == torch.arange(people)).float()
            .mean().item(),
            "mean_cosine_same": positive.mean().item(),
            "mean_cosine_different": off_diagonal.mean().item()}


@torch.no_grad()
def evaluate_flips(attributes: AttributeOracle, identity: IdentityEmbedding, threshold: float,
                   n: int = 500, size: int = 64) -> dict:
    """The oracles on ground-truth edits: held-out faces re-rendered with one attribute
    flipped (same person, same scene), as an edit would ideally produce them.

    Per attribute: accuracy on the flipped attribute, accuracy on the other eight, the
    mean cosine between the flipped and the original face's embeddings, and the share
    of flips still verified as the same person at `threshold`.
    """
    params = sample_params(n, seed=EVAL_SEED + 1)
    original = _apply(identity.eval(), render(params, size))
    rows = {}
    for i, name in enumerate(ATTRIBUTES):
        flipped = params.with_attributes(**{name: 1 - params.attribute(name)})
        images = render(flipped, size)
        correct = (_apply(attributes.eval(), images) > 0).float() == flipped.attributes
        cosine = (_apply(identity, images) * original).sum(1)
        others = torch.cat([correct[:, :i], correct[:, i + 1:]], 1)
        rows[name] = {"flipped_accuracy": correct[:, i].float().mean().item(),
                      "others_accuracy": others.float().mean().item(),
                      "mean_cosine": cosine.mean().item(),
                      "same_person_rate": (cosine > threshold).float().mean().item()}
    return {"n": n, "threshold": threshold, "attributes": rows}


def evaluate_oracles(attributes: AttributeOracle, identity: IdentityEmbedding,
                     size: int = 64) -> dict:
    """All held-out measurements: attribute accuracy, identity verification, flips."""
    id_report = evaluate_identity(identity, size=size)
    return {"attributes": evaluate_attributes(attributes, size=size), "identity": id_report,
            "flips": evaluate_flips(attributes, identity, id_report["threshold"], size=size)}


def save_oracles(out: Path, attributes: AttributeOracle, identity: IdentityEmbedding,
                 report: dict) -> None:
    """Weights as safetensors plus `oracle.json` (accuracies, command, times)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for key, model in (("attributes", attributes), ("identity", identity)):
        _write_weights(model, out / WEIGHTS[key])
    write_json_atomic(out / REPORT, report)


def _write_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "vrfam-rt-oracle"})


def _read_weights(model: nn.Module, path: Path, hint: str) -> nn.Module:
    """Load oracle weights into `model` (eval mode); a missing or foreign file is one line."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise VrfamError(f"{path}: no oracle weights; train them with `{hint}`")
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:  # safetensors and load_state_dict raise their own types
        raise VrfamError(f"{path} does not hold {type(model).__name__} weights "
                         f"({str(exc).splitlines()[0]})") from None
    return model.eval()


def shipped_oracles() -> Path:
    """The folder of the oracles trained by the command in its oracle.json."""
    from importlib import resources

    return Path(str(resources.files("vrfam_rt").joinpath("assets", "oracle")))


def load_oracles(folder: Path | None = None) -> tuple[AttributeOracle, IdentityEmbedding]:
    """The two networks saved by `save_oracles` (default: the shipped ones), in eval mode."""
    folder = shipped_oracles() if folder is None else folder
    hint = f"vrfam-rt synth train-oracle --out {folder}"
    return (_read_weights(AttributeOracle(), Path(folder) / WEIGHTS["attributes"], hint),
            _read_weights(IdentityEmbedding(), Path(folder) / WEIGHTS["identity"], hint))


def train_judge(config: TrainConfig, out: Path, command: str, log=None) -> dict:
    """A second attribute oracle from another seed: the judge of evaluations, so that no
    network that trained a model (the generator's distillation uses the first oracle)
    also scores it. Writes JUDGE and JUDGE_REPORT into `out`; returns the report."""
    started = time.perf_counter()
    judge = train_attribute_oracle(config, log=log)
    report = {"config": dataclasses.asdict(config), "torch_threads": torch.get_num_threads(),
              "command": command, "attributes": evaluate_attributes(judge, size=config.size)}
    report["attributes"]["train_seconds"] = time.perf_counter() - started
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_weights(judge, out / JUDGE)
    write_json_atomic(out / JUDGE_REPORT, report)
    return report


def load_judge(folder: Path | None = None) -> AttributeOracle:
    """The judge attribute oracle saved by `train_judge` (default: the shipped one)."""
    folder = shipped_oracles() if folder is None else folder
    hint = f"vrfam-rt synth train-oracle --judge --seed 1 --out {folder}"
    return _read_weights(AttributeOracle(), Path(folder) / JUDGE, hint)


def train_oracles(config: TrainConfig, log=None) -> tuple[AttributeOracle, IdentityEmbedding,
                                                          dict]:
    """Both networks, each timed and evaluated on held-out renders."""
    started = time.perf_counter()
    attributes = train_attribute_oracle(config, log=log and (lambda s, l: log("attributes", s, l)))
    attr_seconds = time.perf_counter() - started
    started = time.perf_counter()
    identity = train_identity_embedding(config, log=log and (lambda s, l: log("identity", s, l)))
    id_seconds = time.perf_counter() - started
    report = evaluate_oracles(attributes, identity, config.size)
    report["attributes"]["train_seconds"] = attr_seconds
    report["identity"]["train_seconds"] = id_seconds
    return attributes, identity, {"config": dataclasses.asdict(config),
                                  "torch_threads": torch.get_num_threads()} | report
