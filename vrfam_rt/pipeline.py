"""The edit pipeline of the paper's Fig. 1, over any backend.

photo -> align (dlib FFHQ crop) -> encoder -> fused transformer -> generator -> image

Decoding and alignment run on the CPU; from the uint8 crop on, tensors live on the
backend's device (resize and normalisation included) until the images come back.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import torch

from vrfam_rt.errors import VrfamError
from vrfam_rt.images import normalise, read_rgb, to_tensor

ALPHA_LIMIT = 1.5      # the paper's test-time range of the editing strength


@dataclass(frozen=True)
class Edit:
    """Alphas per attribute, applied one after another in the bundle's attribute order."""

    alphas: tuple[tuple[str, float], ...]

    @property
    def name(self) -> str:
        return "_".join(f"{attr}{alpha:+.1f}" for attr, alpha in self.alphas)


def parse_edits(attrs: list[str], attributes: tuple[str, ...], sweep: str | None = None,
                force: bool = False) -> list[Edit]:
    """`NAME[=ALPHA]` options (and an optional START:STOP:N sweep) -> edits to render.

    Without a sweep all attributes form one sequential edit; with a sweep there is one
    edit per sweep value, each applying every named attribute at that strength.
    """
    if not attrs:
        raise VrfamError("give at least one --attr NAME[=ALPHA]")
    pairs = []
    for text in attrs:
        name, _, value = text.partition("=")
        if name not in attributes:
            close = difflib.get_close_matches(name, attributes, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise VrfamError(f"--attr {text}: unknown attribute {name!r}{hint} "
                             f"(this bundle edits: {', '.join(attributes)})")
        try:
            alpha = float(value) if value else 1.0
        except ValueError:
            raise VrfamError(f"--attr {text}: alpha {value!r} is not a number") from None
        pairs.append((name, alpha))
    alphas = [[a for _, a in pairs]]
    if sweep:
        alphas = [[v] * len(pairs) for v in parse_sweep(sweep)]
    for row in alphas:
        for (name, _), alpha in zip(pairs, row):
            if abs(alpha) > ALPHA_LIMIT and not force:
                raise VrfamError(f"alpha {alpha:g} for {name} is outside [-{ALPHA_LIMIT}, "
                                 f"{ALPHA_LIMIT}], the range the transformers were trained "
                                 "for; pass --force to use it anyway")
    return [Edit(tuple((name, alpha) for (name, _), alpha in zip(pairs, row))) for row in alphas]


def parse_sweep(text: str) -> list[float]:
    try:
        start, stop, count = text.split(":")
        start, stop, count = float(start), float(stop), int(count)
    except ValueError:
        raise VrfamError(f"--alpha-sweep {text!r} is not START:STOP:N (e.g. -1.5:1.5:7)") from None
    if count < 1:
        raise VrfamError(f"--alpha-sweep {text!r}: N must be at least 1")
    return torch.linspace(start, stop, count).tolist() if count > 1 else [start]


class EditPipeline:
    """Preprocess -> encode -> transform -> generate, batched, on one backend."""

    def __init__(self, backend, input_size: int, align: bool = True, device: str = "cpu"):
        self.backend = backend
        self.input_size = input_size
        self.device = torch.device(device)
        self.aligner = None
        if align:
            from vrfam_rt.align import FaceAligner
            self.aligner = FaceAligner()

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.backend.attributes)

    def load(self, path: Path) -> torch.Tensor:
        """One photo -> uint8 [3,S,S] face crop (aligned unless alignment is off)."""
        from PIL import Image

        image = read_rgb(path)
        if self.aligner is not None:
            image = self.aligner.align(image, self.input_size, source=str(path))
        else:
            image = image.resize((self.input_size, self.input_size), Image.BICUBIC)
        return to_tensor(image)

    def alphas(self, edit: Edit, batch: int) -> torch.Tensor:
        row = torch.zeros(len(self.attributes))
        for attr, alpha in edit.alphas:
            row[self.attributes.index(attr)] = alpha
        return row.expand(batch, -1).to(self.device)

    def __call__(self, faces: torch.Tensor, edits: list[Edit]) -> dict[str, torch.Tensor]:
        """uint8 faces [B,3,S,S] -> {"input", "reconstruction", edit name: image [B,3,R,R]}."""
        image = normalise(faces.to(self.device), self.input_size)
        with torch.inference_mode():
            wplus = self.backend.encoder(image)
            out = {"input": image, "reconstruction": self.backend.generator(wplus)}
            for edit in edits:
                edited = self.backend.transformer(wplus, self.alphas(edit, len(faces)))
                out[edit.name] = self.backend.generator(edited)
        return out
