"""Image files to the encoder's input tensors (decode, orient, convert, resize, normalise)."""
from __future__ import annotations

from pathlib import Path

import torch

from vrfam_rt.errors import VrfamError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """One image file -> [3,size,size] float32 in [-1,1] (EXIF-oriented RGB, bicubic)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                img = img.point(lambda v: v / 256).convert("L")
            img = img.convert("RGB").resize((size, size), Image.BICUBIC)
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise VrfamError(f"{path}: not a readable image ({exc})") from None
    return data.view(size, size, 3).permute(2, 0, 1).float() / 127.5 - 1.0


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise VrfamError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VrfamError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files
