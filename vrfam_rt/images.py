"""Image files in and out: safe decoding to RGB, tensors, atomic PNG writes."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from vrfam_rt.errors import VrfamError

if TYPE_CHECKING:                 # torch is imported where it is used: `vrfam-rt --help`
    import torch                  # reads this module's limits and must stay fast

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
MAX_PIXELS = 64 * 2**20        # decode at most 64 Mpx (decompression bombs); --max-pixels
DRAFT_SIDE = 2048              # JPEGs decode reduced (1/2, 1/4, 1/8) down to about this


def read_rgb(path: str | Path | bytes, max_pixels: int = MAX_PIXELS,
             draft: int | None = DRAFT_SIDE, name: str | None = None):
    """Decode an image file (or its bytes: an upload; `name` says what it is in
    messages) to an 8-bit RGB PIL image (EXIF orientation applied).

    JPEGs are reduced while decoding (PIL's draft mode: by 1/2, 1/4 or 1/8 to no less
    than `draft` pixels a side), so a 100-Mpx phone photo costs a few Mpx to decode;
    the `max_pixels` limit applies to what is decoded, and over it the message is ours
    (PIL's own decompression-bomb warning and error never reach the user).
    RGBA/LA are composited on white, palette and grayscale are expanded, 16-bit and
    32-bit integer images are scaled to 8 bits.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(path, (bytes, bytearray, memoryview)):
        source, path = io.BytesIO(path), name or "the image"
    else:
        source = path = Path(path)
        if not path.is_file():
            raise VrfamError(f"{path}: no such file" if not path.exists() else
                             f"{path} is a folder, not an image")
        if path.stat().st_size == 0:
            raise VrfamError(f"{path}: the file is empty")
    try:
        with _without_pil_pixel_limit(), Image.open(source) as img:
            if draft and img.format == "JPEG":
                img.draft("RGB", (draft, draft))
            if img.width * img.height > max_pixels:
                raise VrfamError(f"{path}: {img.width}x{img.height} is too large to decode "
                                 f"safely (limit {max_pixels / 2**20:g} Mpx, "
                                 f"`max_pixels={max_pixels}`); "
                                 "downscale it first")
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                scale = 1 / 256 if img.mode.startswith("I;16") else 1 / 2**24
                img = img.point(lambda v: v * scale).convert("L")
            if img.mode == "P":
                img = img.convert("RGBA")
            if img.mode in ("RGBA", "LA", "PA"):
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img.convert("RGBA"))
            return img.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        # PIL names an in-memory file by its repr (<_io.BytesIO object at 0x...>)
        reason = "not a format PIL knows" if isinstance(exc, UnidentifiedImageError) else exc
        raise VrfamError(f"{path}: not a readable image ({reason})") from None


@contextlib.contextmanager
def _without_pil_pixel_limit():
    """PIL's process-wide pixel limit off (and its warning silenced) while read_rgb,
    which enforces its own limit on the pixels it decodes, opens a file."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def to_tensor(image) -> torch.Tensor:
    """PIL RGB -> uint8 tensor [3,H,W]."""
    import torch

    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, 3).permute(2, 0, 1)


def normalise(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [B,3,H,W] on any device -> float [B,3,size,size] in [-1,1] (antialiased resize)."""
    import torch

    x = images.float() / 127.5 - 1.0
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic",
                                            antialias=True, align_corners=False)
    return x.clamp(-1, 1)


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """One image file -> [3,size,size] float32 in [-1,1], without face alignment."""
    return normalise(to_tensor(read_rgb(path))[None], size)[0]


def to_pil(image: torch.Tensor):
    """[3,H,W] float in about [-1,1] -> PIL RGB."""
    import torch
    from PIL import Image

    data = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(data.permute(1, 2, 0).contiguous().numpy(), "RGB")


def png_bytes(image) -> bytes:
    """A PIL image encoded as PNG (what `save_png` writes to a file)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


PROVENANCE_KEY = "vrfam-rt"      # the PNG text chunk that says how an image was made


def save_png(image, path: Path, provenance: dict | None = None, **options) -> None:
    """Write a PIL image as PNG through a temporary file renamed into place; `provenance`
    (how it was made: bundle digest, method, backend, precision, edit) goes into a
    text chunk that `read_provenance` and `vrfam-rt info IMAGE` read back; `options`
    go to PIL's PNG writer (icc_profile, exif)."""
    import json

    from PIL.PngImagePlugin import PngInfo

    from vrfam_rt.fileio import atomic_file
    from vrfam_rt.version import __version__

    info = None
    if provenance is not None:
        info = PngInfo()
        info.add_text("Software", f"vrfam-rt {__version__}")
        info.add_text(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True))
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info, **options)


JPEG_QUALITY = 95               # photos written as JPEG: high quality, no chroma subsampling


def save_photo(image, path: Path, provenance: dict | None = None,
               format: str = "png") -> None:
    """Write a PIL photo as PNG (`save_png`) or JPEG (`format` 'jpg': quality
    JPEG_QUALITY, 4:4:4), atomically, with the ICC profile and EXIF its info carries
    (a decoded photo's: orientation already applied) and `provenance` (a JPEG keeps it
    in its comment, where `read_provenance` finds it)."""
    import json

    from vrfam_rt.fileio import atomic_file
    from vrfam_rt.version import __version__

    kept = {k: image.info[k] for k in ("icc_profile", "exif") if image.info.get(k)}
    if format == "png":
        save_png(image, path, provenance, **kept)
        return
    comment = (f"{PROVENANCE_KEY} {__version__} " + json.dumps(provenance, sort_keys=True)
               if provenance is not None else "")
    with atomic_file(path) as tmp:
        image.save(tmp, format="JPEG", quality=JPEG_QUALITY, subsampling=0,
                   comment=comment.encode(), **kept)


def read_provenance(path: str | Path) -> dict | None:
    """What `save_png`, `save_photo` or `vrfam_rt.video.edit_video` recorded in an image
    or clip of ours, or None (not ours)."""
    import json

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(PROVENANCE_KEY)
            comment = image.info.get("comment", b"") if image.format == "JPEG" else b""
    except UnidentifiedImageError:      # a clip of ours keeps it in its comment tag
        comment = _clip_comment(path).encode()
        text = None
    except (OSError, SyntaxError):
        return None
    if isinstance(comment, bytes) and comment.startswith(PROVENANCE_KEY.encode() + b" "):
        text = comment.decode("utf-8", "replace").split(" ", 2)[-1]
    try:
        record = json.loads(text) if text else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _clip_comment(path: str | Path) -> str:
    """The comment tag of a video file (`vrfam_rt.video.edit_video` writes its record
    there), or "" (not a video PyAV reads)."""
    try:
        import av
    except ImportError:
        return ""
    try:
        with av.open(str(path)) as container:
            return container.metadata.get("comment", "")
    except (av.error.FFmpegError, OSError, ValueError):
        return ""


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise VrfamError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VrfamError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def expand_inputs(paths) -> list[Path]:
    """Files as given, folders expanded to the images they hold (sorted)."""
    found = []
    for path in map(Path, paths):
        found += image_files(path) if path.is_dir() else [path]
    return found
