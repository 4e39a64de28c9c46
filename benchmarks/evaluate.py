"""The paper's Table 1 metrics, and the attribute and identity scores of edits.

- distortion: mean squared error between inputs and reconstructions, images in [-1, 1];
- perception FID: Frechet distance between features of inputs and reconstructions;
- editability FID: Frechet distance between features of inputs and edited images;
- identity similarity: mean cosine between identity embeddings of input and edit (and,
  as what an edit starts from, of input and reconstruction);
- target accuracy: the edited attribute reads as asked (present for alpha > 0, absent
  for alpha < 0); non-target accuracy: every other attribute reads as on the input.

What reads the images is a `Judges`: on the synthetic benchmark the oracles trained on
the renders (`vrfam_rt/synthetic/oracles.py`), which reports must name as stand-ins for Inception
(FID) and ArcFace/dlib (identity); on real photos the Inception network of a user file
(`InceptionFeatures`), the bundle's latent classifier on re-encoded images for the
attributes, and dlib's face descriptor (`DlibDescriptor`) for identity.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

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


@dataclasses.dataclass
class Judges:
    """What reads the images of an evaluation, and what each stands for.

    features: images [N,3,S,S] -> [N,D] for the Frechet distances;
    attributes: images -> bool [N,K] in the order of the edited attributes, or None;
    identity: images -> unit embeddings [N,E] (similarity = cosine), or None;
    dlib: dlib's descriptor for a second identity score on real photos, or None;
    names: {"fid_features", "attribute_reader", "identity_model": what they are}.
    """

    features: Callable[[torch.Tensor], torch.Tensor] | None
    attributes: Callable[[torch.Tensor], torch.Tensor] | None
    identity: Callable[[torch.Tensor], torch.Tensor] | None
    dlib: "DlibDescriptor | None" = None
    names: dict = dataclasses.field(default_factory=dict)


def oracle_judges(oracle, identity, columns: list[int] | None = None) -> Judges:
    """Synthetic oracles as judges (the eval command passes the judge attribute oracle,
    which took no part in training); `columns` picks the oracle's attributes in the
    order of the edited ones (default: all, in ATTRIBUTES order)."""
    def read(images):
        logits = oracle(images)
        return (logits if columns is None else logits[:, columns]) > 0

    return Judges(lambda images: oracle_features(oracle, images), read, identity, None, {
        "fid_features": "synthetic judge oracle's features (stand-in for Inception)",
        "attribute_reader": "synthetic judge oracle (took no part in training)",
        "identity_model": "synthetic identity embedding (stand-in for ArcFace)"})


def mean_cosine(identity: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor,
                b: torch.Tensor) -> float:
    """Mean cosine of the unit identity embeddings of images a and b [N,3,S,S], pairwise."""
    with torch.no_grad():
        return float((identity(a) * identity(b)).sum(1).mean())


def score_edit(inputs: torch.Tensor, edited: torch.Tensor, attribute: int, alpha: float,
               judges: Judges) -> dict[str, float]:
    """Attribute and identity scores of one edit applied to every input [N,3,S,S]."""
    out = {}
    with torch.no_grad():
        if judges.attributes is not None:
            before, after = judges.attributes(inputs), judges.attributes(edited)
            others = [k for k in range(before.shape[1]) if k != attribute]
            out["target_accuracy"] = float((after[:, attribute] == (alpha > 0)).float().mean())
            out["non_target_accuracy"] = float((after[:, others] == before[:, others])
                                               .float().mean())
        if judges.identity is not None:
            out["identity_similarity"] = mean_cosine(judges.identity, inputs, edited)
    if judges.dlib is not None:
        out.update(dlib_identity(judges.dlib, inputs, edited))
    return out


def identity_baselines(identity: Callable[[torch.Tensor], torch.Tensor], faces: torch.Tensor,
                       retaken: torch.Tensor, strangers: torch.Tensor) -> dict[str, float]:
    """The anchors an edit's identity similarity sits between: the mean cosine the
    identity embedding reads between each face [N,3,S,S] and `retaken`, the same person
    drawn again under other nuisance (pose, light, background; attributes kept), and
    between each face and `strangers`, other people."""
    return {"identity_same_person": mean_cosine(identity, faces, retaken),
            "identity_other_person": mean_cosine(identity, faces, strangers)}


def table1(inputs: torch.Tensor, reconstructions: torch.Tensor,
           edits: dict[tuple[int, float], torch.Tensor], judges: Judges) -> dict:
    """Distortion, perception FID, editability FID over all edits pooled, and the mean
    attribute and identity scores; `edits` maps (attribute index, alpha) -> images."""
    if not edits:
        raise ValueError("table1 needs at least one edit")
    real = judges.features(inputs)
    scores = [score_edit(inputs, images, k, alpha, judges) for (k, alpha), images in edits.items()]
    inversion = {}
    if judges.identity is not None:   # what the edits start from: the inversion's identity
        inversion["identity_reconstruction"] = mean_cosine(judges.identity, inputs,
                                                           reconstructions)
    return {
        "distortion_l2": float((inputs - reconstructions).square().mean()),
        "perception_fid": frechet_distance(real, judges.features(reconstructions)),
        "editability_fid": frechet_distance(
            real, judges.features(torch.cat(list(edits.values())))),
        **{name: sum(s[name] for s in scores) / len(scores) for name in scores[0]},
        **inversion,
        "per_edit": [{"attribute": k, "alpha": alpha, **s}
                     for ((k, alpha), s) in zip(edits, scores)],
        **judges.names,
    }


# ---- real photos: Inception features from a user file, dlib's face descriptor -----------
INCEPTION_HELP = ("the TorchScript Inception of the StyleGAN2-ADA / clean-fid metrics "
                  "(inception-2015-12-05.pt), called as net(images, return_features=True) on "
                  "float RGB in [0, 255] at 299 x 299")


class InceptionFeatures:
    """pool3 features [N,2048] of images [N,3,H,W] in [-1,1], from a TorchScript file."""

    def __init__(self, path, device: str = "cpu"):
        from pathlib import Path

        from vrfam_rt.errors import VrfamError, argument

        path = Path(path)
        if not path.is_file():
            raise VrfamError(f"{argument('inception', path)}: no such file; give {INCEPTION_HELP}")
        try:
            with warnings.catch_warnings():   # TorchScript is deprecated; the file is one
                warnings.simplefilter("ignore", DeprecationWarning)
                self.net = torch.jit.load(str(path), map_location=device).eval()
        except Exception as exc:  # torch.jit raises RuntimeError and others
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VrfamError(f"{argument('inception', path)} is not a TorchScript file "
                             f"({reason}); give "
                             f"{INCEPTION_HELP}") from None
        self.path, self.device = path, device

    def __call__(self, images: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        from vrfam_rt.errors import VrfamError, argument

        out = []
        with torch.no_grad():
            for start in range(0, len(images), chunk):
                part = (images[start:start + chunk].float().clamp(-1, 1) + 1) * 127.5
                part = torch.nn.functional.interpolate(part, size=(299, 299), mode="bilinear",
                                                       align_corners=False).clamp(0, 255)
                try:
                    features = self.net(part.to(self.device), return_features=True)
                except Exception as exc:     # TorchScript errors carry a traceback: last line
                    reason = [line for line in str(exc).splitlines() if line.strip()][-1:]
                    why = " ".join(reason).strip()
                    raise VrfamError(f"{argument('inception', self.path)} failed on a batch "
                                     f"({why}); "
                                     f"give {INCEPTION_HELP}") from None
                out.append(features.reshape(len(part), -1).float().cpu())
        return torch.cat(out)


class DlibDescriptor:
    """dlib's 128-d face descriptor (ResNet of face_recognition_models) of face crops.

    Faces are found by dlib's frontal detector; on an aligned crop where it finds none,
    the central box an FFHQ crop puts the face in stands in (counted in `fallbacks`).
    Same person: Euclidean distance below 0.6 (dlib's threshold).
    """

    THRESHOLD = 0.6

    def __init__(self):
        from vrfam_rt.align import INSTALL_HINT, predictor_path
        from vrfam_rt.errors import MissingDependency

        try:
            import dlib
        except ImportError:
            raise MissingDependency(f"the dlib identity score needs dlib: {INSTALL_HINT}") from None
        models = predictor_path().parent
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self.fallbacks = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] in [-1,1] -> descriptors [N,128] (float64)."""
        import numpy as np

        out = []
        for image in images:
            rgb = np.ascontiguousarray(((image.float().clamp(-1, 1) + 1) * 127.5).round()
                                       .byte().permute(1, 2, 0).numpy())
            faces = self.detector(rgb, 1)
            if faces:
                box = max(faces, key=lambda r: r.width() * r.height())
            else:
                h, w = rgb.shape[:2]
                box = self.dlib.rectangle(int(0.2 * w), int(0.25 * h), int(0.8 * w), int(0.85 * h))
                self.fallbacks += 1
            shape = self.shape(rgb, box)
            out.append(np.array(self.net.compute_face_descriptor(rgb, shape)))
        return torch.from_numpy(np.stack(out))


def dlib_identity(descriptor: DlibDescriptor, inputs: torch.Tensor,
                  edited: torch.Tensor) -> dict[str, float]:
    """Mean dlib distance between input and edit, and the share under dlib's threshold."""
    distance = (descriptor(inputs) - descriptor(edited)).norm(dim=1)
    return {"dlib_distance": float(distance.mean()),
            "dlib_same_person": float((distance < descriptor.THRESHOLD).double().mean())}
