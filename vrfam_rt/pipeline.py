"""The edit core: the paper's Fig. 1 over any backend, inverting once and editing many.

photo(s) -> decode -> align (dlib FFHQ crop of each face, its transform kept) -> encoder
         -> Inversion
Inversion + edits -> fused transformer -> generator -> EditResult (edited crops, and each
         photo with its edited faces pasted back: vrfam_rt.pasteback)

Decoding and alignment run on the CPU; from the uint8 crop on, tensors live on the
backend's device (resize and normalisation included) until the images come back.
Batching (`max_batch` rows a stage call, padded to a few sizes for backends compiled per
batch size), device placement and per-input failures live here: every front end (the
CLI's edit and eval, the server, gpu-check) calls EditPipeline, never a stage.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vrfam_rt.config import ALPHA_LIMIT
from vrfam_rt.errors import UsageError, VrfamError, argument
from vrfam_rt.images import MAX_PIXELS, normalise, read_rgb, to_pil, to_tensor
from vrfam_rt.inversion import Failure, Inversion
from vrfam_rt.on_demand import MAX_BATCH


@dataclass(frozen=True)
class Edit:
    """Alphas per attribute, applied one after another in the bundle's attribute order.

    `decimals` is how many digits the alphas carry in the edit's name (file names): as
    many as a sweep needs for its names to differ.
    """

    alphas: tuple[tuple[str, float], ...]
    decimals: int = 1

    @property
    def name(self) -> str:
        if not self.alphas:
            return "reconstruction"
        return "_".join(f"{attr}{alpha:+.{self.decimals}f}" for attr, alpha in self.alphas)

    @property
    def label(self) -> str:
        """The name as a caption: 'Smiling +1.0, Eyeglasses -0.5'."""
        if not self.alphas:
            return "reconstruction"
        return ", ".join(f"{attr} {alpha:+.{self.decimals}f}" for attr, alpha in self.alphas)


RECONSTRUCTION = Edit(())     # no attribute changed: the generator renders W+ as inverted


def parse_edits(attrs: list[str], attributes: tuple[str, ...], alpha_sweep: str | None = None,
                force: bool = False, option: str = "attrs",
                force_hint: str | None = "`force=True`") -> list[Edit]:
    """`NAME[=ALPHA]` options (and an optional START:STOP:N sweep) -> edits to render.

    Without a sweep all attributes form one sequential edit; with a sweep there is one
    edit per sweep value, each applying every named attribute at that strength. Names
    match the bundle's attributes whatever their case. Every mistake is a UsageError
    whose message names the text as the caller's argument `option`; an alpha out of
    range names `force_hint`, how this caller allows one (none: it cannot).
    """
    sweep = alpha_sweep
    if not attrs:
        raise UsageError(f"give at least one edit, e.g. {argument(option, 'Smiling=1')}")
    if not attributes:
        raise UsageError("this bundle edits nothing: it holds no latent transformer (`vrfam-rt "
                         "import --transformer ATTR=FILE` adds one; `vrfam-rt info --bundle` "
                         "says what a bundle can do)")
    by_lower = {a.lower(): a for a in attributes}
    pairs = []
    for text in attrs:
        given, _, value = text.partition("=")
        name = by_lower.get(given.strip().lower())
        if name is None:
            close = difflib.get_close_matches(given, attributes, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"{argument(option, text)}: unknown attribute {given!r}{hint} "
                             f"(this bundle edits: {', '.join(attributes)})")
        if value and sweep:
            raise UsageError(f"{argument(option, text)} gives a strength and "
                             f"{argument('alpha_sweep', sweep)} gives others; name the "
                             f"attribute alone ({argument(option, name)}) to sweep it")
        try:
            alpha = float(value) if value else 1.0
        except ValueError:
            raise UsageError(f"{argument(option, text)}: alpha {value!r} is not a number") from None
        if not math.isfinite(alpha):
            raise UsageError(f"{argument(option, text)}: alpha must be a finite number")
        pairs.append((name, alpha))
    alphas = [[a for _, a in pairs]]
    if sweep:
        alphas = [[v] * len(pairs) for v in parse_sweep(sweep)]
    for row in alphas:
        for (name, _), alpha, text in zip(pairs, row, attrs):
            if abs(alpha) > ALPHA_LIMIT and not force:
                how = f"; pass {force_hint} to use it anyway" if force_hint else ""
                given = argument("alpha_sweep", sweep) if sweep else argument(option, text)
                raise UsageError(f"{given}: alpha {alpha:g} for "
                                 f"{name} is outside [-{ALPHA_LIMIT}, "
                                 f"{ALPHA_LIMIT}], the range the transformers were trained "
                                 f"for{how}")
    rows = [tuple((name, alpha) for (name, _), alpha in zip(pairs, row)) for row in alphas]
    decimals = next(d for d in range(1, 7) if len({Edit(r, d).name for r in rows}) == len(rows))
    return [Edit(row, decimals) for row in rows]


def parse_sweep(text: str) -> list[float]:
    """START:STOP:N -> N distinct strengths from START to STOP (N = 1: START alone)."""
    try:
        start, stop, count = text.split(":")
        start, stop, count = float(start), float(stop), int(count)
    except ValueError:
        raise UsageError(f"{argument('alpha_sweep', text)} is not START:STOP:N "
                         "(e.g. -1.5:1.5:7)") from None
    if count < 1 or count > 1001:
        raise UsageError(f"{argument('alpha_sweep', text)}: N must lie in 1..1001")
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise UsageError(f"{argument('alpha_sweep', text)}: START and STOP must be finite "
                         "numbers")
    if count > 1 and abs(stop - start) < 1e-6 * (count - 1):
        raise UsageError(f"{argument('alpha_sweep', text)}: {count} strengths need START and STOP "
                         "at least 1e-6 apart per step")
    if count == 1:
        return [start]
    return [round(start + (stop - start) * i / (count - 1), 6) for i in range(count)]


EXAMPLE = "e.g. {'Smiling': 1.0, 'Eyeglasses': -0.5}"     # the `edits` of the API


def edit_texts(edits) -> list[str]:
    """The `edits` argument of the Python API, {attribute: alpha}, as NAME=ALPHA texts;
    a TypeError that says what to pass for anything else."""
    from numbers import Real

    if not isinstance(edits, Mapping):
        raise TypeError(f"edits must be a mapping {{attribute: alpha}} ({EXAMPLE}), not "
                        f"{type(edits).__name__}")
    for name, alpha in edits.items():
        if not isinstance(name, str) or isinstance(alpha, bool) or not isinstance(alpha, Real):
            raise TypeError(f"edits maps attribute names to numbers ({EXAMPLE}); got "
                            f"{name!r}: {alpha!r}")
    return [f"{name}={float(alpha)!r}" for name, alpha in edits.items()]


def as_pil(image, name: str = "the image"):
    """A PIL image or a numpy array (HxWx3 RGB, HxWx4 RGBA or HxW gray; uint8) -> RGB
    PIL image; a TypeError that says what to pass for anything else."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and
                                                               image.shape[2] in (3, 4))):
            raise TypeError(f"{name}: a numpy image must be uint8 HxWx3 (RGB), HxWx4 or HxW; "
                            f"got {image.dtype} {list(image.shape)}")
        return Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    raise TypeError(f"{name}: pass a path, a PIL image, a numpy uint8 HxWx3 array or encoded "
                    f"bytes, not {type(image).__name__}")


def as_edits(edits, attributes: tuple[str, ...], force: bool = False) -> list[Edit]:
    """The `edits` argument of EditPipeline.edit -> Edits: a mapping {attribute: alpha}
    (several attributes applied one after another; {} the reconstruction), an Edit, or a
    list of them (one image each: a sweep). `force` allows alphas outside [-1.5, 1.5]."""
    if isinstance(edits, (Mapping, Edit)):
        edits = [edits]
    if not isinstance(edits, (list, tuple)) or not edits:
        raise TypeError(f"edits must be a mapping {{attribute: alpha}} ({EXAMPLE}) or a "
                        f"non-empty list of them, not {repr(edits)[:80]}")
    return [as_edit(e, attributes, force) for e in edits]


def as_edit(edit, attributes: tuple[str, ...], force: bool = False) -> Edit:
    """One edit of the API, a mapping {attribute: alpha} ({}: the reconstruction) or an
    Edit, as an Edit."""
    if isinstance(edit, Edit):
        return edit
    texts = edit_texts(edit)
    return parse_edits(texts, attributes, force=force, option="edits")[0] if texts \
        else RECONSTRUCTION


def bucket(count: int, limit: int) -> int:
    """The batch size a batch of `count` runs at on a backend compiled per batch size:
    the next power of two (at most `limit`), so a server compiles log2(limit) + 1 sizes
    once instead of one per batch size it happens to see."""
    size = 1
    while size < count:
        size *= 2
    return min(max(size, count), max(limit, count))


def pad_rows(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """[B,...] -> [size,...]: padded with copies of its last row (whose results are dropped)."""
    if size == len(tensor):
        return tensor
    return torch.cat([tensor, tensor[-1:].expand(size - len(tensor), *tensor.shape[1:])])


FACES_HELP = "'all', 'largest' or a number N (the N largest)"


def face_limit(faces, option: str = "faces") -> int | None:
    """Which faces of a photo to edit -> how many, the largest first (None: all):
    'all', 'largest' (1) or a number N >= 1; a UsageError naming `option` otherwise."""
    if isinstance(faces, str) and faces.strip().lower() in ("all", "largest"):
        return None if faces.strip().lower() == "all" else 1
    try:
        count = int(faces) if not isinstance(faces, (bool, float)) else None
    except (TypeError, ValueError):
        count = None
    if count is None or count < 1:
        raise UsageError(f"{option} {faces!r}: give {FACES_HELP}")
    return count


@dataclass(frozen=True)
class EditResult:
    """What EditPipeline.edit rendered: each face under each edit, each photo with its
    faces pasted back, and the inputs that gave no face."""

    inversion: Inversion               # the faces edited (sources, alignment transforms)
    edits: tuple[Edit, ...]            # E edits, in the order asked
    crops: tuple[tuple, ...]           # [N][E] PIL RGB images, the generator's R x R
    photos: tuple = ()                 # per input given to invert: [E] PIL RGB photos of its
    #                                    size with the edited faces blended in (None where
    #                                    it gave no face); () when the inversion kept no
    #                                    photos

    @property
    def failures(self) -> tuple[Failure, ...]:
        return self.inversion.failures


class EditPipeline:
    """Invert photos once (decode, align, encode), edit them any number of times
    (transform, generate), batched, on one backend.

    From Python:

        pipe = EditPipeline.from_bundle(None, backend="ort")      # None: the shipped default
        [edited] = pipe("photo.jpg", {"Smiling": 1.0})            # -> list of PIL photos
        inversion = pipe.invert(["a.jpg", "b.png"])               # the encoder runs here
        sweep = pipe.edit(inversion, [{"Smiling": a} for a in (-1, 0, 1)])
        sweep.photos[1][2]                                        # b.png, Smiling +1
        sweep.crops[0][2]                                         # its first face's crop
    """

    def __init__(self, backend, input_size: int, align: bool = True, max_batch: int = MAX_BATCH,
                 max_pixels: int = MAX_PIXELS):
        self.backend = backend
        self.max_pixels = max_pixels
        self.input_size = input_size
        self.device = torch.device(backend.device)      # where the stages' outputs live
        self.align = align
        self.max_batch = max_batch
        self._aligner = None
        if align:                          # fails now, in one line, when dlib is missing
            self._face_aligner()

    @classmethod
    def from_bundle(cls, bundle=None, backend: str = "auto", precision: str = "fp32",
                    device: str | None = None, cache_root: str | Path | None = None,
                    max_batch: int = MAX_BATCH, threads: int | None = None, align: bool = True,
                    cuda_graphs: bool = False, say=None, method: str | None = None,
                    config=None, seed: int | None = None,
                    max_pixels: int = MAX_PIXELS) -> "EditPipeline":
        """A pipeline for a model on a backend (vrfam_rt.on_demand.open_runtime: `device=None`
        is the backend's own), exporting graphs or building plans into the per-bundle cache
        under `cache_root` (default on_demand.default_cache_root(): $VRFAM_RT_CACHE, else
        ~/.cache/vrfam-rt, as for the CLI) when it needs them. The model is what
        `suite.open_bundle(bundle, method=, config=, seed=)` names: a Bundle, a bundle or
        suite folder (`method` picks a suite's member, default vrfam), None for the shipped
        default, or `config` (with `seed`) for a seeded random bundle."""
        from vrfam_rt.on_demand import open_runtime
        from vrfam_rt.suite import open_bundle

        if threads:
            torch.set_num_threads(threads)
        bundle = open_bundle(bundle, method=method, config=config, seed=seed)
        runner = open_runtime(bundle, backend, precision, device, threads, cache_root,
                              cuda_graphs=cuda_graphs, say=say, max_batch=max_batch)
        return cls(runner, bundle.config.encoder.input_size, align=align, max_batch=max_batch,
                   max_pixels=max_pixels)

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.backend.attributes)

    def __call__(self, images, edits: Mapping[str, float] | None = None,
                 align: bool | None = None, force: bool = False, faces="all",
                 color_match: bool = False) -> list:
        """Photos (a path, a PIL image, a numpy array, encoded bytes, or a list of them)
        -> one PIL image each: the photo with its faces (`faces`: 'all', 'largest' or
        N) edited in place, the edit {attribute: alpha, ...} applied one attribute
        after another, or the reconstruction when no edit is given; `force` allows
        alphas outside [-1.5, 1.5]. Without alignment the input is a face crop and the
        edited crop comes back. `pipe.edit(pipe.invert(images), edits)`, one image
        per input: in a list, an input that failed (unreadable, no face) holds its
        VrfamError instead; a single input that fails raises it."""
        edit = as_edits([{} if edits is None else edits], self.attributes, force)
        aligned = self.align if align is None else align
        result = self.edit(self.invert(images, align, faces=faces if aligned else "largest",
                                       photos=aligned), edit, color_match=color_match)
        many = isinstance(images, (list, tuple))
        if not many and result.failures:
            raise result.failures[0].error
        out: list = [None] * (len(images) if many else 1)
        for face, crops in zip(result.inversion, result.crops):
            out[face.index] = result.photos[face.index][0] if aligned else crops[0]
        for failure in result.failures:
            out[failure.index] = failure.error
        return out

    def invert(self, images, align: bool | Sequence[bool] | None = None,
               names: Sequence[str] | None = None, faces="all",
               photos: bool = True) -> Inversion:
        """Photos (as for a call) -> their faces' crops, alignment transforms and W+
        codes, batch-encoded. `align`: the pipeline's setting, or a flag for all or one
        per image; `names`: what messages call each image (default: its path, else
        images[i]); `faces`: which faces of an aligned photo, 'all', 'largest' or N
        (the N largest), largest first; `photos`: keep each photo, decoded at full
        resolution, for `edit` to paste the faces back into (False: JPEGs decode
        reduced, as for crops alone). An input that fails (unreadable, too large, no
        face) is recorded in the inversion's `failures` and the others go on."""
        limit = face_limit(faces)
        many = isinstance(images, (list, tuple))
        items = list(images) if many else [images]
        flags = list(align) if isinstance(align, (list, tuple)) else [align] * len(items)
        if names is None:
            names = [str(x) if isinstance(x, (str, Path)) else
                     f"images[{i}]" if many else "the image" for i, x in enumerate(items)]
        if not len(flags) == len(names) == len(items):
            raise TypeError(f"{len(items)} images need as many align flags and names; got "
                            f"{len(flags)} and {len(names)}")
        kept, crops, quads, failures, decoded = [], [], [], [], [None] * len(items)
        for i, (image, flag, name) in enumerate(zip(items, flags, names)):
            try:
                photo, found = self._crops(image, self.align if flag is None else flag, name,
                                           limit, photos)
            except VrfamError as exc:
                failures.append(Failure(i, name, exc))
                continue
            for crop, quad in found:
                kept.append(i)
                crops.append(crop)
                quads.append(quad)
            decoded[i] = photo if photos else None
        return self._inversion(kept, [names[i] for i in kept], crops, quads, failures,
                               decoded if photos else None)

    def locate(self, photo, faces="all", upsample: int = 1,
               near: Sequence | None = None) -> list[tuple[np.ndarray, tuple]]:
        """A PIL RGB photo -> (FFHQ quad [4,2], landmark box) of each of its faces
        (`faces` as for `invert`), the largest first; [] when it has none. What a
        video's frames are aligned by before their quads are smoothed over time
        (vrfam_rt.video). `upsample` 0 finds faces of 80 px and more at a quarter of
        the cost of 1 (40 px: FaceAligner.all_landmarks); `near`: the landmark boxes of
        faces in the frame before, followed by the shape predictor alone, no detector."""
        from vrfam_rt.align import ffhq_quad, landmark_box

        aligner, rgb = self._face_aligner(), np.asarray(photo)
        found = aligner.follow(rgb, near) if near is not None else \
            aligner.all_landmarks(rgb, face_limit(faces), upsample)
        return [(ffhq_quad(points) + 0.5, landmark_box(points)) for points in found]

    def stream(self, images: Sequence, edits, *, align: bool | None = None, faces="all",
               photos: bool = True, color_match: bool = False, force: bool = False
               ) -> Iterator[tuple[int, EditResult]]:
        """`edit(invert(images), edits)` as a stream over a long list: max_batch inputs
        at a time, each yielded as (the index of its first input, its EditResult, whose
        indices count within the chunk), so that a caller writes results as they come
        and memory stays bounded."""
        edits = as_edits(edits, self.attributes, force)
        for first in range(0, len(images), self.max_batch):
            chunk = images[first:first + self.max_batch]
            inversion = self.invert(chunk, align, faces=faces, photos=photos)
            yield first, self.edit(inversion, edits, color_match=color_match)

    def invert_at(self, photos: Sequence, quads: Sequence[Sequence[np.ndarray]],
                  names: Sequence[str] | None = None) -> Inversion:
        """PIL RGB photos and, per photo, the quads [4,2] to cut its faces at (from
        `locate`, smoothed or not; none: a photo without faces) -> their Inversion,
        batch-encoded, the photos kept for paste-back."""
        names = list(names) if names is not None else [f"images[{i}]" for i in range(len(photos))]
        kept, crops, corners = [], [], []
        for i, (photo, found) in enumerate(zip(photos, quads)):
            for quad in found:
                kept.append(i)
                crops.append(self._warp(photo, quad))
                corners.append(quad)
        return self._inversion(kept, [names[i] for i in kept], crops, corners, [],
                               list(photos))

    def _inversion(self, kept: list, sources: list, crops: list, quads: list,
                   failures: list, photos: list | None) -> Inversion:
        """Faces (input index, source, uint8 crop [3,S,S], quad [4,2] each) encoded into
        an Inversion; `photos` (per input) kept for paste-back unless None."""
        size = self.input_size
        crops = torch.stack(crops) if crops else torch.zeros(0, 3, size, size, dtype=torch.uint8)
        quads = torch.from_numpy(np.array(quads, dtype=np.float64).reshape(-1, 4, 2))
        wplus = self.encode(crops).to("cpu", copy=True)     # a plain tensor, free to change
        return Inversion(tuple(kept), tuple(sources), quads, crops, wplus, tuple(failures),
                         tuple(photos) if photos is not None else ())

    def edit(self, inversion: Inversion, edits, force: bool = False,
             color_match: bool = False) -> EditResult:
        """Render each face of `inversion` under each edit (see `as_edits`: a mapping
        {attribute: alpha}, {} for the reconstruction, or a list of them): the
        transformer and the generator only, the reconstruction by the generator alone,
        every stage call batched across faces and edits. When the inversion kept its
        photos, each is returned with its edited faces pasted back (vrfam_rt.pasteback;
        `color_match` moves each face's colours to the photo's)."""
        edits = as_edits(edits, self.attributes, force)
        n = len(inversion)
        cells: dict[tuple[int, int], object] = {}           # (face, edit) -> PIL image
        kept = [j for j, e in enumerate(edits) if not e.alphas]
        changed = [j for j, e in enumerate(edits) if e.alphas]
        if kept and n:
            for i, image in enumerate(self._images(inversion.wplus)):
                cells.update({(i, j): image for j in kept})
        if changed and n:
            wplus = inversion.wplus.repeat(len(changed), 1, 1)              # [E*N,L,D]
            alphas = self.alphas([edits[j] for j in changed for _ in range(n)])  # [E*N,K]
            for k, image in enumerate(self._images(wplus, alphas)):
                cells[k % n, changed[k // n]] = image
        crops = tuple(tuple(cells[i, j] for j in range(len(edits))) for i in range(n))
        return EditResult(inversion, tuple(edits), crops,
                          self._paste(inversion, crops, len(edits), color_match))

    @staticmethod
    def _paste(inversion: Inversion, crops: tuple, count: int, color_match: bool) -> tuple:
        """Each kept photo with its faces' crops [N][E] pasted back, per edit: [P][E]
        (None for an input without faces)."""
        from vrfam_rt.pasteback import paste_back

        photos: list = [None] * len(inversion.photos)
        for index, photo in enumerate(inversion.photos):
            faces = [k for k, i in enumerate(inversion.indices) if i == index]
            if photo is None or not faces:
                continue
            photos[index] = tuple(
                paste_back(photo, [(crops[k][j], inversion.transforms[k].numpy()) for k in faces],
                           color_match) for j in range(count))
        return tuple(photos)

    def alphas(self, edits: Sequence[Edit]) -> torch.Tensor:
        """Edits -> alpha rows [len(edits),K] in the bundle's attribute order (CPU)."""
        rows = torch.zeros(len(edits), len(self.attributes))
        for row, edit in zip(rows, edits):
            for attr, alpha in edit.alphas:
                row[self.attributes.index(attr)] = alpha
        return rows

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 crops [N,3,H,W] (normalised on the device) or float images [N,3,S,S] in
        [-1,1] -> W+ [N,L,D] on the backend's device: the encoder, max_batch at a time."""
        codes = []
        for (x,), count in self._batches(images):
            with torch.inference_mode():
                x = normalise(x, self.input_size) if x.dtype == torch.uint8 else x
                codes.append(self.backend.encoder(x)[:count])
        if not codes:
            return torch.zeros(0, *self.backend.stage_inputs("generator")["wplus"][1:])
        return torch.cat(codes)

    def render(self, wplus: torch.Tensor, alphas: torch.Tensor | None = None) -> torch.Tensor:
        """W+ [N,L,D] (N >= 1) and alpha rows [N,K] (None: the reconstruction) -> images
        [N,3,R,R] in about [-1,1] on the backend's device."""
        return torch.cat(list(self._renders(wplus, alphas)))

    def _renders(self, wplus: torch.Tensor, alphas: torch.Tensor | None) -> Iterator[torch.Tensor]:
        """`render`, max_batch rows at a time: images [b,3,R,R] per batch."""
        for chunk, count in self._batches(wplus, *([] if alphas is None else [alphas])):
            with torch.inference_mode():
                codes = chunk[0] if alphas is None else self.backend.transformer(*chunk)
                yield self.backend.generator(codes)[:count]

    def _images(self, wplus: torch.Tensor, alphas: torch.Tensor | None = None) -> Iterator:
        """`render` as PIL images, one by one, each batch freed once converted."""
        for batch in self._renders(wplus, alphas):
            yield from (to_pil(image) for image in batch)

    def _batches(self, *tensors: torch.Tensor) -> Iterator[tuple[list[torch.Tensor], int]]:
        """The same max_batch rows of each tensor at a time, on the backend's device and,
        for a backend compiled per batch size, padded to a bucket: (rows, how many are
        real)."""
        for start in range(0, len(tensors[0]), self.max_batch):
            chunk = [t[start:start + self.max_batch].to(self.device) for t in tensors]
            count = len(chunk[0])
            if self.backend.static_shapes:
                chunk = [pad_rows(t, bucket(count, self.max_batch)) for t in chunk]
            yield chunk, count

    def _crops(self, image, align: bool, name: str, limit: int | None = None,
               full: bool = False):
        """One photo -> (the decoded PIL photo, [(uint8 crop [3,S,S], its corners in the
        photo [4,2])]): the FFHQ crops of its faces, the largest first (at most `limit`;
        None: all), or the whole photo resized when alignment is off.

        image: a path, a PIL image, a numpy array (HxWx3 RGB or HxW gray, uint8), or an
        encoded file's bytes; `name` says what it is in messages; `full`: decode a JPEG
        at full resolution (what paste-back writes into) rather than reduced."""
        from PIL import Image

        from vrfam_rt.images import DRAFT_SIDE

        if isinstance(image, (str, Path, bytes, bytearray, memoryview)):
            image = read_rgb(image, self.max_pixels, draft=None if full else DRAFT_SIDE,
                             name=name)
        else:
            image = as_pil(image, name)
        size = self.input_size
        if align:
            quads = self._face_aligner().quads(image, source=name, limit=limit)
            return image, [(self._warp(image, quad), quad) for quad in quads]
        width, height = image.size
        quad = np.array([[0, 0], [0, height], [width, height], [width, 0]], dtype=np.float64)
        return image, [(to_tensor(image.resize((size, size), Image.BICUBIC)), quad)]

    def _warp(self, photo, quad: np.ndarray) -> torch.Tensor:
        """The crop of a PIL photo at quad [4,2], uint8 [3,S,S] at the encoder's size."""
        from vrfam_rt.align import warp

        return to_tensor(warp(photo, quad, self.input_size))

    def _face_aligner(self):
        if self._aligner is None:
            from vrfam_rt.align import FaceAligner
            self._aligner = FaceAligner()
        return self._aligner
