"""The edit pipeline of the paper's Fig. 1, over any backend.

photo -> align (dlib FFHQ crop) -> encoder -> fused transformer -> generator -> image

Decoding and alignment run on the CPU; from the uint8 crop on, tensors live on the
backend's device (resize and normalisation included) until the images come back.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from vrfam_rt.config import ALPHA_LIMIT
from vrfam_rt.errors import UsageError
from vrfam_rt.images import MAX_PIXELS, normalise, read_rgb, to_tensor


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
        return "_".join(f"{attr}{alpha:+.{self.decimals}f}" for attr, alpha in self.alphas)

    @property
    def label(self) -> str:
        """The name as a caption: 'Smiling +1.0, Eyeglasses -0.5'."""
        return ", ".join(f"{attr} {alpha:+.{self.decimals}f}" for attr, alpha in self.alphas)


def parse_edits(attrs: list[str], attributes: tuple[str, ...], sweep: str | None = None,
                force: bool = False, option: str = "--attr") -> list[Edit]:
    """`NAME[=ALPHA]` options (and an optional START:STOP:N sweep) -> edits to render.

    Without a sweep all attributes form one sequential edit; with a sweep there is one
    edit per sweep value, each applying every named attribute at that strength. Names
    match the bundle's attributes whatever their case. Every mistake is a UsageError
    whose message names the `option` the text came from.
    """
    if not attrs:
        raise UsageError(f"give at least one {option} NAME[=ALPHA]")
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
            raise UsageError(f"{option} {text}: unknown attribute {given!r}{hint} "
                             f"(this bundle edits: {', '.join(attributes)})")
        if value and sweep:
            raise UsageError(f"--attr {text} gives a strength and --alpha-sweep gives others; "
                             f"name the attribute alone (--attr {name}) to sweep it")
        try:
            alpha = float(value) if value else 1.0
        except ValueError:
            raise UsageError(f"{option} {text}: alpha {value!r} is not a number") from None
        if not math.isfinite(alpha):
            raise UsageError(f"{option} {text}: alpha must be a finite number")
        pairs.append((name, alpha))
    alphas = [[a for _, a in pairs]]
    if sweep:
        alphas = [[v] * len(pairs) for v in parse_sweep(sweep)]
    for row in alphas:
        for (name, _), alpha in zip(pairs, row):
            if abs(alpha) > ALPHA_LIMIT and not force:
                how = {"--attr": "; pass --force to use it anyway",
                       "edits": "; pass force=True to use it anyway"}.get(option, "")
                raise UsageError(f"{'--alpha-sweep' if sweep else option}: alpha {alpha:g} for "
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
        raise UsageError(f"--alpha-sweep {text!r} is not START:STOP:N (e.g. -1.5:1.5:7)") from None
    if count < 1 or count > 1001:
        raise UsageError(f"--alpha-sweep {text!r}: N must lie in 1..1001")
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise UsageError(f"--alpha-sweep {text!r}: START and STOP must be finite numbers")
    if count > 1 and abs(stop - start) < 1e-6 * (count - 1):
        raise UsageError(f"--alpha-sweep {text!r}: {count} strengths need START and STOP "
                         "at least 1e-6 apart per step")
    if count == 1:
        return [start]
    return [round(start + (stop - start) * i / (count - 1), 6) for i in range(count)]


def edit_texts(edits) -> list[str]:
    """The `edits` argument of the Python API, {attribute: alpha}, as NAME=ALPHA texts;
    a TypeError that says what to pass for anything else."""
    from collections.abc import Mapping
    from numbers import Real

    example = "e.g. {'Smiling': 1.0, 'Eyeglasses': -0.5}"
    if not isinstance(edits, Mapping):
        raise TypeError(f"edits must be a mapping {{attribute: alpha}} ({example}), not "
                        f"{type(edits).__name__}")
    for name, alpha in edits.items():
        if not isinstance(name, str) or isinstance(alpha, bool) or not isinstance(alpha, Real):
            raise TypeError(f"edits maps attribute names to numbers ({example}); got "
                            f"{name!r}: {alpha!r}")
    return [f"{name}={float(alpha)!r}" for name, alpha in edits.items()]


def as_pil(image, name: str = "the image"):
    """A PIL image or a numpy array (HxWx3 RGB, HxWx4 RGBA or HxW gray; uint8) -> RGB
    PIL image; a TypeError that says what to pass for anything else."""
    import numpy as np
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


class EditPipeline:
    """Preprocess -> encode -> transform -> generate, batched, on one backend.

    From Python:

        pipe = EditPipeline.from_bundle(None, backend="ort")      # None: the shipped default
        [edited] = pipe("photo.jpg", {"Smiling": 1.0})            # -> list of PIL images
    """

    def __init__(self, backend, input_size: int, align: bool = True, device: str = "cpu",
                 max_batch: int = 4, max_pixels: int = MAX_PIXELS):
        self.backend = backend
        self.max_pixels = max_pixels
        self.input_size = input_size
        self.device = torch.device(device)
        self.align = align
        self.max_batch = max_batch
        self._aligner = None
        if align:                          # fails now, in one line, when dlib is missing
            self._face_aligner()

    @classmethod
    def from_bundle(cls, bundle=None, backend: str = "auto", precision: str = "fp32",
                    device: str = "cpu", cache_dir: str | Path | None = None,
                    max_batch: int = 4, threads: int | None = None, align: bool = True,
                    cuda_graphs: bool = False, say=None, method: str | None = None,
                    max_pixels: int = MAX_PIXELS) -> "EditPipeline":
        """A pipeline for a bundle (a Bundle, a bundle or suite folder, or None for the
        shipped default; `method` picks a suite's member, default vrfam) on a backend,
        exporting graphs or building plans into the per-bundle cache under `cache_dir`
        (default ~/.cache/vrfam-rt) when it needs them."""
        from vrfam_rt.bundle import Bundle
        from vrfam_rt.environment import parse_device
        from vrfam_rt.fileio import writable_folder
        from vrfam_rt.runtime import default_cache_root, open_runtime
        from vrfam_rt.suite import resolve

        device = parse_device(device)
        if backend != "eager":              # the graphs and plans are made into the cache
            writable_folder(cache_dir or default_cache_root(), "cache_dir")
        if threads:
            torch.set_num_threads(threads)
        if not isinstance(bundle, Bundle):
            bundle = Bundle.load(resolve(bundle, method))
        elif method:
            raise UsageError("method picks a bundle of a model suite; give the suite's "
                             "folder (or None), not a Bundle")
        runner = open_runtime(bundle, backend, precision, device, threads, cache_dir,
                              cuda_graphs=cuda_graphs, say=say, max_batch=max_batch)
        return cls(runner, bundle.config.encoder.input_size, align=align,
                   device=str(getattr(runner, "device", device)), max_batch=max_batch,
                   max_pixels=max_pixels)

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.backend.attributes)

    def load(self, image, align: bool | None = None, name: str = "the image") -> torch.Tensor:
        """One photo -> uint8 [3,S,S] face crop, aligned unless alignment is off.

        image: a path, a PIL image, a numpy array (HxWx3 RGB or HxW gray, uint8), or an
        encoded file's bytes; `name` says what it is in messages."""
        from PIL import Image

        align = self.align if align is None else align
        source = str(image) if isinstance(image, (str, Path)) else name
        if isinstance(image, (str, Path, bytes, bytearray, memoryview)):
            image = read_rgb(image, self.max_pixels, name=name)
        else:
            image = as_pil(image, name)
        if align:
            image = self._face_aligner().align(image, self.input_size, source=source)
        else:
            image = image.resize((self.input_size, self.input_size), Image.BICUBIC)
        return to_tensor(image)

    def _face_aligner(self):
        if self._aligner is None:
            from vrfam_rt.align import FaceAligner
            self._aligner = FaceAligner()
        return self._aligner

    def alphas(self, edit: Edit, batch: int) -> torch.Tensor:
        row = torch.zeros(len(self.attributes))
        for attr, alpha in edit.alphas:
            row[self.attributes.index(attr)] = alpha
        return row.expand(batch, -1).to(self.device)

    def run(self, faces: torch.Tensor, edits: list[Edit]) -> dict[str, torch.Tensor]:
        """uint8 faces [B,3,S,S] -> {"input", "reconstruction", edit name: image [B,3,R,R]}."""
        image = normalise(faces.to(self.device), self.input_size)
        with torch.inference_mode():
            wplus = self.backend.encoder(image)
            out = {"input": image, "reconstruction": self.backend.generator(wplus)}
            for edit in edits:
                edited = self.backend.transformer(wplus, self.alphas(edit, len(faces)))
                out[edit.name] = self.backend.generator(edited)
        return out

    def edit_faces(self, faces: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """uint8 faces [B,3,S,S] and one alpha row each [B,A] (the bundle's attribute
        order) -> edited images [B,3,R,R]: what `run` renders for each face's edit, in
        one batch however the edits differ (the transformer adds alpha times each
        attribute's step, so an all-zero row renders the reconstruction)."""
        image = normalise(faces.to(self.device), self.input_size)
        with torch.inference_mode():
            wplus = self.backend.encoder(image)
            edited = self.backend.transformer(wplus, alphas.to(self.device, torch.float32))
            return self.backend.generator(edited)

    def alpha_row(self, edit: Edit | None) -> torch.Tensor:
        """An edit's alphas as one row in the bundle's attribute order (zeros: none)."""
        return self.alphas(edit, 1)[0].cpu() if edit else torch.zeros(len(self.attributes))

    def __call__(self, images, edits: dict[str, float] | None = None,
                 align: bool | None = None, force: bool = False) -> list:
        """Photos (a path, a PIL image, a numpy array, or a list of them) -> one PIL
        image each: the edit {attribute: alpha, ...} applied one attribute after
        another, or the reconstruction when no edit is given. `force` allows alphas
        outside [-1.5, 1.5]."""
        from vrfam_rt.images import to_pil

        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        edit = parse_edits(edit_texts(edits), self.attributes, force=force,
                           option="edits")[0] if edits else None
        out = []
        for start in range(0, len(images), self.max_batch):
            faces = torch.stack([self.load(x, align) for x in images[start:start + self.max_batch]])
            result = self.run(faces, [edit] if edit else [])
            key = edit.name if edit else "reconstruction"
            out += [to_pil(image) for image in result[key]]
        return out
