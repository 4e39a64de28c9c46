"""The paper's Table 1 metrics, and the attribute and identity scores of edits.

- distortion: mean squared error between inputs and reconstructions, images in [-1, 1];
- perception FID: Frechet distance between features of inputs and reconstructions;
- editability FID: Frechet distance between features of inputs and edited images;
- identity similarity: mean cosine between identity embeddings of input and edit;
- target accuracy: the edited attribute reads as asked (present for alpha > 0, absent
  for alpha < 0); non-target accuracy: every other attribute reads as on the input.

On the synthetic benchmark the features and readings come from the oracles trained on
the renders (`training/oracle.py`); reports must name them as such, since they stand in
for Inception (FID) and ArcFace/dlib (identity).
"""
from __future__ import annotations

import torch


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [D] and covariance [D,D] (unbiased) of features [N,D], in float64."""
    x = features.double()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"feature_stats needs [N>=2, D] features, got {tuple(x.shape)}")
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.t() @ centred / (x.shape[0] - 1)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.t()) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.t()


def frechet_from_stats(mean1, cov1, mean2, cov2) -> float:
    """||m1 - m2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)).

    tr((C1 C2)^(1/2)) is taken as the trace of (C1^(1/2) C2 C1^(1/2))^(1/2), a symmetric
    positive semi-definite matrix with the same eigenvalues, so singular covariances
    (fewer samples than feature dimensions) stay well defined.
    """
    root1 = _sqrt_psd(cov1.double())
    middle = root1 @ cov2.double() @ root1
    cross = torch.linalg.eigvalsh((middle + middle.t()) / 2).clamp(min=0).sqrt().sum()
    diff = (mean1.double() - mean2.double()).square().sum()
    return float(diff + cov1.double().trace() + cov2.double().trace() - 2 * cross)


def frechet_distance(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """Frechet distance between two feature sets [N1,D] and [N2,D]."""
    return frechet_from_stats(*feature_stats(features1), *feature_stats(features2))


def oracle_features(oracle: torch.nn.Module, images: torch.Tensor, chunk: int = 256):
    """The attribute oracle's last convolutional features, average-pooled to 2x2 so
    that coarse position (hair above, beard below) stays: [N, 4 * channels]."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            size = oracle.input_size
            if part.shape[-1] != size:
                part = torch.nn.functional.interpolate(part, size=(size, size), mode="bilinear",
                                                       antialias=True, align_corners=False)
            features = oracle.features(part)
            out.append(torch.nn.functional.adaptive_avg_pool2d(features, 2).flatten(1))
    return torch.cat(out)


def score_edit(inputs: torch.Tensor, edited: torch.Tensor, attribute: int, alpha: float,
               oracle, identity) -> dict[str, float]:
    """Attribute and identity scores of one edit applied to every input [N,3,S,S]."""
    with torch.no_grad():
        before = oracle(inputs) > 0
        after = oracle(edited) > 0
        similarity = (identity(inputs) * identity(edited)).sum(1)
    others = [k for k in range(before.shape[1]) if k != attribute]
    wanted = alpha > 0
    return {
        "target_accuracy": float((after[:, attribute] == wanted).float().mean()),
        "non_target_accuracy": float((after[:, others] == before[:, others]).float().mean()),
        "identity_similarity": float(similarity.mean()),
    }


def table1(inputs: torch.Tensor, reconstructions: torch.Tensor,
           edits: dict[tuple[int, float], torch.Tensor], oracle, identity) -> dict:
    """Distortion, perception FID, editability FID over all edits pooled, and the mean
    attribute and identity scores; `edits` maps (attribute index, alpha) -> images."""
    if not edits:
        raise ValueError("table1 needs at least one edit")
    real = oracle_features(oracle, inputs)
    scores = [score_edit(inputs, images, k, alpha, oracle, identity)
              for (k, alpha), images in edits.items()]
    return {
        "distortion_l2": float((inputs - reconstructions).square().mean()),
        "perception_fid": frechet_distance(real, oracle_features(oracle, reconstructions)),
        "editability_fid": frechet_distance(
            real, oracle_features(oracle, torch.cat(list(edits.values())))),
        **{name: sum(s[name] for s in scores) / len(scores) for name in scores[0]},
        "per_edit": [{"attribute": k, "alpha": alpha, **s}
                     for ((k, alpha), s) in zip(edits, scores)],
    }
