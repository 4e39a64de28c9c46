"""Training data: CelebA-style image folders, latent datasets, the generator's own samples.

- `read_attributes`: a `list_attr_celeba.txt` file (count line, names line, one
  `file +1/-1 ...` row per image) -> names, files, labels {0,1}.
- `ImageFolder`: the images of a folder (those the attribute file lists, or all),
  FFHQ-aligned on first use and cached under `<folder>/.vrfam-cache/aligned-<S>/`.
- `LatentDataset`: W+ codes [N,L,D] with labels [N,A], written by encoding an image
  folder with a bundle's encoder (cached beside the images, keyed by the encoder's hash).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from vrfam_rt.errors import VrfamError, argument
from vrfam_rt.fileio import sha256_file
from vrfam_rt.images import image_files, normalise, read_rgb, save_png, to_tensor

CACHE = ".vrfam-cache"


def read_attributes(path: Path) -> tuple[tuple[str, ...], list[str], torch.Tensor]:
    """CelebA attribute file -> (attribute names, file names, labels [N,A] float 0/1)."""
    path = Path(path)
    if not path.is_file():
        raise VrfamError(f"{argument('attrs', path)}: no such file")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 3:
        raise VrfamError(f"{path}: not a CelebA attribute file (needs a count line, a names "
                         "line and one row per image)")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise VrfamError(f"{path}: line 1 should be the image count, not {lines[0]!r}") from None
    names = tuple(lines[1].split())
    files, rows = [], []
    for number, line in enumerate(lines[2:], start=3):
        cells = line.split()
        if len(cells) != len(names) + 1 or any(c not in ("1", "+1", "-1") for c in cells[1:]):
            raise VrfamError(f"{path}:{number}: expected a file name and {len(names)} values "
                             "of +1/-1")
        files.append(cells[0])
        rows.append([1.0 if c != "-1" else 0.0 for c in cells[1:]])
    if count != len(files):
        raise VrfamError(f"{path}: line 1 says {count} images, the file lists {len(files)}")
    return names, files, torch.tensor(rows)


class ImageFolder:
    """Face crops of a folder as float [B,3,S,S] in [-1,1], aligned on first use (cached)."""

    def __init__(self, root: Path, files: list[str] | None, size: int, align: bool):
        self.root, self.size, self.align = Path(root), size, align
        if files is None:
            self.files = [p.relative_to(self.root) for p in image_files(self.root)
                          if CACHE not in p.parts]
        else:
            self.files = [Path(f) for f in files]
            missing = [f for f in self.files if not (self.root / f).is_file()]
            if missing:
                raise VrfamError(f"{self.root / missing[0]}: listed in the attribute file but "
                                 "not found "
                                 f"({len(missing)} missing)")
        self.cache = self.root / CACHE / f"aligned-{size}"
        self._aligner = None

    def __len__(self) -> int:
        return len(self.files)

    def face(self, i: int) -> torch.Tensor:
        """Image i -> float [3,S,S] in [-1,1] (from the cached aligned crop when aligning)."""
        source = self.root / self.files[i]
        if not self.align:
            return normalise(to_tensor(read_rgb(source))[None], self.size)[0]
        cached = (self.cache / self.files[i]).with_suffix(".png")
        if not cached.is_file():
            if self._aligner is None:
                from vrfam_rt.align import FaceAligner
                self._aligner = FaceAligner()
            save_png(self._aligner.align(read_rgb(source), self.size, source=str(source)), cached)
        return normalise(to_tensor(read_rgb(cached))[None], self.size)[0]

    def batch(self, indices: torch.Tensor) -> torch.Tensor:  # [B] -> [B,3,S,S] in [-1,1]
        return torch.stack([self.face(int(i)) for i in indices])


@dataclasses.dataclass
class LatentDataset:
    """W+ codes with attribute labels."""

    wplus: torch.Tensor                 # [N,L,D], latent_avg included
    labels: torch.Tensor                # [N,A] float 0/1
    attributes: tuple[str, ...]         # the label columns

    def __len__(self) -> int:
        return self.wplus.shape[0]

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file
        from vrfam_rt.fileio import atomic_file
        with atomic_file(path) as tmp:
            save_file({"wplus": self.wplus.contiguous(), "labels": self.labels.contiguous()},
                      tmp, metadata={"attributes": json.dumps(list(self.attributes))})

    @classmethod
    def load(cls, path: Path) -> "LatentDataset":
        from safetensors import safe_open
        try:
            with safe_open(str(path), "pt") as f:
                names = json.loads((f.metadata() or {})["attributes"])
                return cls(f.get_tensor("wplus").float(), f.get_tensor("labels").float(),
                           tuple(names))
        except Exception as exc:
            raise VrfamError(f"{path} is not a vrfam-rt latent dataset (needs 'wplus', 'labels' "
                             f"and attribute names; {exc})") from None

    def columns(self, names: tuple[str, ...], what: str) -> torch.Tensor:
        """Labels [N,len(names)] in the order of `names`; a missing one is an error."""
        missing = [n for n in names if n not in self.attributes]
        if missing:
            raise VrfamError(f"the training data has no label for {what} attribute "
                             f"{missing[0]!r} (it has {', '.join(self.attributes)})")
        return self.labels[:, [self.attributes.index(n) for n in names]]

    def correlation(self, names: tuple[str, ...]) -> torch.Tensor:
        """Pearson correlation [A,A] of the labels of `names` (0 for a constant label)."""
        x = self.columns(names, "classifier")
        x = x - x.mean(0)
        std = x.pow(2).mean(0).sqrt()
        corr = (x.T @ x) / len(x) / (std[:, None] * std[None, :]).clamp_min(1e-12)
        return corr.clamp(-1, 1)


@torch.no_grad()
def encode_folder(folder: ImageFolder, labels: torch.Tensor, names: tuple[str, ...], encoder,
                  batch: int = 16) -> LatentDataset:
    """Encode every image of `folder` with a bundle encoder -> LatentDataset."""
    device = encoder.latent_avg.device
    codes = [encoder(folder.batch(torch.arange(i, min(i + batch, len(folder)))).to(device)).cpu()
             for i in range(0, len(folder), batch)]
    return LatentDataset(torch.cat(codes), labels, names)


def latent_dataset(data: Path, attrs: Path | None, bundle, align: bool) -> LatentDataset:
    """`--data`: a latent dataset file, or an image folder (+ --attrs) encoded with the bundle.

    The encoded codes are cached as `<folder>/.vrfam-cache/latents-<encoder>-<attrs>.safetensors`.
    """
    data = Path(data)
    if data.is_file():
        return LatentDataset.load(data)
    if not data.is_dir():
        raise VrfamError(f"{argument('data', data)}: no such folder or latent dataset file")
    if attrs is None:
        raise VrfamError(f"{argument('data', data)} is an image folder; give its labels with "
                         "`attrs='list_attr_celeba.txt'`")
    names, files, labels = read_attributes(attrs)
    key = f"{bundle.component_hashes()['encoder'][:12]}-{sha256_file(Path(attrs))[:12]}"
    cache = data / CACHE / f"latents-{key}{'' if align else '-noalign'}.safetensors"
    if cache.is_file():
        return LatentDataset.load(cache)
    folder = ImageFolder(data, files, bundle.encoder.input_size, align)
    dataset = encode_folder(folder, labels, names, bundle.encoder)
    dataset.save(cache)
    return dataset


# ---- the frozen generator's own samples ---------------------------------------------------
@torch.no_grad()
def sample_w(generator, batch: int, gen: torch.Generator) -> torch.Tensor:
    """W codes [B,D] = mapping(z), z ~ N(0,1) drawn from `gen` on the CPU."""
    z = torch.randn(batch, generator.config.latent_dim, generator=gen)
    return generator.mapping(z.to(generator.input.input.device))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Generator output [B,3,R,R] -> [B,3,size,size] (area pooling down, bilinear up)."""
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)

