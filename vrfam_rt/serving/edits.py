"""One batch of edit requests: each decoded and checked on its own, the good ones edited
in one batch, every request answered with its PNG or with the error that names its
problem (a bad request never costs the others of its batch their answers)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vrfam_rt.align import NoFaceFound
from vrfam_rt.errors import VrfamError
from vrfam_rt.images import png_bytes, to_pil
from vrfam_rt.pipeline import EditPipeline, parse_edits
from vrfam_rt.serving import MAX_BYTES


@dataclass(frozen=True)
class EditRequest:
    """An encoded photo (JPEG, PNG, WebP, ...), the edits in the CLI's `--attr` syntax
    joined by commas ("Smiling=1.0,Eyeglasses=-1"; empty: the reconstruction), and
    whether to align the face first."""

    image: bytes
    edits: str = ""
    align: bool = True


class EditService:
    """Answers batches of EditRequests with one pipeline; uploads over `max_bytes` are
    refused before they are decoded."""

    def __init__(self, pipeline: EditPipeline, max_bytes: int = MAX_BYTES):
        self.pipeline = pipeline
        self.max_bytes = max_bytes

    def prepare(self, request: EditRequest) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 face crop [3,S,S], alpha row [A]) or a VrfamError naming the request's
        input at fault (`image`, `edits`, `align`) and what to send instead."""
        if not request.image:
            raise VrfamError("image: empty; send an encoded photo (JPEG, PNG, WebP)")
        if len(request.image) > self.max_bytes:
            raise VrfamError(f"image: {len(request.image)} bytes, over this server's limit of "
                             f"{self.max_bytes}; send a smaller photo")
        parts = [p for p in request.edits.split(",") if p.strip()]
        edit = parse_edits(parts, self.pipeline.attributes, option="edits")[0] if parts else None
        try:
            face = self.pipeline.load(request.image, align=request.align, name="image")
        except NoFaceFound:
            raise VrfamError("image: no face found; send a frontal photo, or align=false "
                             "with a face crop") from None
        return face, self.pipeline.alpha_row(edit)

    def __call__(self, requests: list[EditRequest]) -> list[bytes | VrfamError]:
        """One answer per request, in order: the edited face as PNG bytes, or the error."""
        answers: list[bytes | VrfamError | None] = [None] * len(requests)
        good, faces, rows = [], [], []
        for i, request in enumerate(requests):
            try:
                face, row = self.prepare(request)
            except VrfamError as exc:
                answers[i] = exc
                continue
            good.append(i)
            faces.append(face)
            rows.append(row)
        for start in range(0, len(good), self.pipeline.max_batch):
            chunk = slice(start, start + self.pipeline.max_batch)
            faces_in, rows_in = torch.stack(faces[chunk]), torch.stack(rows[chunk])
            count = len(faces_in)
            if getattr(self.pipeline.backend, "static_shapes", False):
                faces_in, rows_in = pad_batch(faces_in, rows_in, self.pipeline.max_batch)
            images = self.pipeline.edit_faces(faces_in, rows_in)[:count]
            for i, image in zip(good[chunk], images):
                answers[i] = png_bytes(to_pil(image))
        return answers


def bucket(count: int, limit: int) -> int:
    """The batch size a batch of `count` runs at on a backend compiled per batch size:
    the next power of two (at most `limit`), so a server compiles log2(limit) + 1 sizes
    once instead of one per batch size it happens to see."""
    size = 1
    while size < count:
        size *= 2
    return min(max(size, count), max(limit, count))


def pad_batch(faces: torch.Tensor, rows: torch.Tensor, limit: int):
    """The batch padded to its bucket with copies of its last face (whose results are
    dropped)."""
    size = bucket(len(faces), limit)
    if size == len(faces):
        return faces, rows
    extra = size - len(faces)
    return (torch.cat([faces, faces[-1:].expand(extra, *faces.shape[1:])]),
            torch.cat([rows, rows[-1:].expand(extra, *rows.shape[1:])]))
