"""One batch of edit requests: each checked on its own, the good ones inverted and edited
by the pipeline in one batch, every request answered with its PNG or with the error that
names its problem (a bad request never costs the others of its batch their answers)."""
from __future__ import annotations

from dataclasses import dataclass

from vrfam_rt.align import NoFaceFound
from vrfam_rt.errors import VrfamError
from vrfam_rt.images import png_bytes, to_pil
from vrfam_rt.pipeline import RECONSTRUCTION, Edit, EditPipeline, parse_edits
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

    def prepare(self, request: EditRequest) -> Edit:
        """The request's edit, or a VrfamError naming the request's input at fault
        (`image`, `edits`) and what to send instead."""
        if not request.image:
            raise VrfamError("image: empty; send an encoded photo (JPEG, PNG, WebP)")
        if len(request.image) > self.max_bytes:
            raise VrfamError(f"image: {len(request.image)} bytes, over this server's limit of "
                             f"{self.max_bytes}; send a smaller photo")
        parts = [p for p in request.edits.split(",") if p.strip()]
        return parse_edits(parts, self.pipeline.attributes, option="edits",
                           force_hint=None)[0] if parts \
            else RECONSTRUCTION

    def __call__(self, requests: list[EditRequest]) -> list[bytes | VrfamError]:
        """One answer per request, in order: the edited face as PNG bytes, or the error."""
        answers: list[bytes | VrfamError | None] = [None] * len(requests)
        good, edits = [], []
        for i, request in enumerate(requests):
            try:
                edits.append(self.prepare(request))
                good.append(i)
            except VrfamError as exc:
                answers[i] = exc
        inversion = self.pipeline.invert([requests[i].image for i in good],
                                         align=[requests[i].align for i in good],
                                         names=["image"] * len(good), faces="largest",
                                         photos=False)
        for failure in inversion.failures:
            answers[good[failure.index]] = VrfamError(
                "image: no face found; send a frontal photo, or align=false with a face crop"
            ) if isinstance(failure.error, NoFaceFound) else failure.error
        if len(inversion):
            alphas = self.pipeline.alphas([edits[i] for i in inversion.indices])   # [N,K]
            images = self.pipeline.render(inversion.wplus, alphas)               # [N,3,R,R]
            for i, image in zip(inversion.indices, images):
                answers[good[i]] = png_bytes(to_pil(image))
        return answers
