"""An inversion: the faces of some photos, each with where it came from, how it was
cropped, and its W+ code; the encoder's work, kept so that any number of edits reuse it
(`EditPipeline.invert` makes one, `EditPipeline.edit` renders from one).

Saved as one safetensors file: the tensors, and a JSON record of the rest (sources,
failures) in the file's metadata; written whole or not at all (vrfam_rt.fileio).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vrfam_rt.errors import VrfamError

FORMAT = "vrfam-rt inversion 1"     # the metadata record's `format`
METADATA_KEY = "vrfam_rt"           # the safetensors metadata entry holding the record


@dataclass(frozen=True)
class Failure:
    """An input that gave no face: which of the inputs (`index`, what messages call it
    `source`) and why (its error, naming it)."""

    index: int
    source: str
    error: VrfamError


@dataclass(frozen=True)
class Face:
    """One inverted face."""

    index: int                   # which of the images given to `invert` it came from
    source: str                  # that image's path, or what messages call it
    transform: torch.Tensor      # float64 [4,2]: the crop's corners (upper left, lower left,
    #                              lower right, upper right) in the source image's pixels
    crop: torch.Tensor           # uint8 [3,S,S]: the aligned face the encoder saw
    wplus: torch.Tensor          # float32 [L,D]: its W+ code


@dataclass(frozen=True)
class Inversion:
    """N faces (a photo gives one or more, under the same index) and the inputs that
    gave none. `inv[i]` is a Face, `inv[i:j]` the Inversion of those faces (failures
    belong to the whole and stay with it; the slice keeps the photos to paste into)."""

    indices: tuple[int, ...]       # [N] Face.index
    sources: tuple[str, ...]       # [N] Face.source
    transforms: torch.Tensor       # float64 [N,4,2] Face.transform
    crops: torch.Tensor            # uint8 [N,3,S,S] Face.crop
    wplus: torch.Tensor            # float32 [N,L,D] Face.wplus, on the CPU
    failures: tuple[Failure, ...] = ()
    photos: tuple = ()             # per input given to invert, its decoded PIL photo (None
    #                                where it failed), kept for paste-back; () when not
    #                                kept; never saved

    def __post_init__(self):
        n = len(self.indices)
        shapes = {"sources": (len(self.sources),), "transforms": self.transforms.shape,
                  "crops": self.crops.shape, "wplus": self.wplus.shape}
        wrong = [k for k, shape in shapes.items() if len(shape) < 1 or shape[0] != n]
        if wrong or self.transforms.shape[1:] != (4, 2) or self.crops.dim() != 4 \
                or self.wplus.dim() != 3:
            raise VrfamError(f"an inversion of {n} faces needs sources [N], transforms "
                             "[N,4,2], crops [N,3,S,S] and wplus [N,L,D]; got " + ", ".join(
                                 f"{k} {list(s)}" for k, s in shapes.items()))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | slice) -> "Face | Inversion":
        if isinstance(key, slice):
            return Inversion(self.indices[key], self.sources[key], self.transforms[key],
                             self.crops[key], self.wplus[key], photos=self.photos)
        i = range(len(self))[key]          # an IndexError past the end ends iteration
        return Face(self.indices[i], self.sources[i], self.transforms[i], self.crops[i],
                    self.wplus[i])

    def save(self, path: str | Path) -> Path:
        """Write the inversion to `path` (a .safetensors file), whole or not at all."""
        from safetensors.torch import save_file

        from vrfam_rt.fileio import atomic_file

        record = {"format": FORMAT, "indices": list(self.indices),
                  "sources": list(self.sources),
                  "failures": [{"index": f.index, "source": f.source, "error": str(f.error)}
                               for f in self.failures]}
        tensors = {"transforms": self.transforms, "crops": self.crops, "wplus": self.wplus}
        with atomic_file(path) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={METADATA_KEY: json.dumps(record)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Inversion":
        """An inversion `save` wrote; a VrfamError naming the file for anything else (the
        failures come back as VrfamErrors with their messages)."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as f:
                record = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, SafetensorError, ValueError) as exc:
            raise VrfamError(f"{path}: not a readable inversion ({exc})") from None
        if record.get("format") != FORMAT or set(tensors) != {"transforms", "crops", "wplus"}:
            raise VrfamError(f"{path}: not an inversion of vrfam-rt (`Inversion.save` writes "
                             "them)")
        failures = tuple(Failure(f["index"], f["source"], VrfamError(f["error"]))
                         for f in record["failures"])
        return cls(tuple(record["indices"]), tuple(record["sources"]), tensors["transforms"],
                   tensors["crops"], tensors["wplus"], failures)
