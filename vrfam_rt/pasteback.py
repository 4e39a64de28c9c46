"""Paste-back: edited face crops warped into their photo at full resolution.

An aligned crop is the square `quad` of its photo (vrfam_rt.align: corners upper left,
lower left, lower right, upper right, in the photo's pixels) resampled to R x R, so a
crop pixel (u, v) in [0,R]^2 sits at  UL + u/R (UR - UL) + v/R (LL - UL)  in the photo.
Pasting inverts that affine map: each photo pixel inside the quad's bounding box looks
up its crop position, samples the edited crop there (bilinear), and is blended with the
photo through a feathered ellipse over the face (FACE_CENTRE, FACE_RADII in crop
units), which is exactly 0 outside the ellipse: those pixels are the photo's own,
bit for bit.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FACE_CENTRE = (0.5, 0.56)   # the face ellipse's centre in an FFHQ crop, in crop widths
FACE_RADII = (0.31, 0.40)   # its half axes (x, y): cheeks to cheeks, brows' top to chin
FEATHER = 0.3               # the outer part of the radius over which the mask falls to 0
STD_RATIO = (0.5, 2.0)      # colour matching scales a channel's contrast by no more


def face_mask(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Crop positions in crop widths (0..1 across the crop) -> mask weight in [0,1]:
    1 inside the inner ellipse, 0 outside the face ellipse, a smoothstep between."""
    d = np.hypot((u - FACE_CENTRE[0]) / FACE_RADII[0], (v - FACE_CENTRE[1]) / FACE_RADII[1])
    t = np.clip((1.0 - d) / FEATHER, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def crop_coordinates(quad: np.ndarray, shape: tuple[int, int]):
    """Where the photo's pixels inside `quad`'s bounding box fall in its crop.

    quad: [4,2] float, the crop's corners in the photo; shape: the photo's (H, W).
    Returns the box (y0, y1, x0, x1) clipped to the photo (None when the quad lies
    outside it) and u, v [y1-y0, x1-x0] float64: each pixel centre's crop position
    in crop widths.
    """
    quad = np.asarray(quad, dtype=np.float64)
    height, width = shape
    x0, y0 = np.floor(quad.min(0)).astype(int)
    x1, y1 = np.ceil(quad.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None, None, None
    axes = np.stack([quad[3] - quad[0], quad[1] - quad[0]], axis=1)   # [2,2]: columns ex, ey
    inverse = np.linalg.inv(axes)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    offset = np.stack([xs + 0.5 - quad[0, 0], ys + 0.5 - quad[0, 1]])  # [2,h,w]
    u, v = np.einsum("ij,jhw->ihw", inverse, offset)
    return (y0, y1, x0, x1), u, v


def sample(crop: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear sample of crop [R,R,3] (uint8) at positions u, v [h,w] (crop widths;
    pixel centres at (k + 0.5) / R) -> float32 [h,w,3]; edges clamp."""
    size = crop.shape[0]
    x = np.clip(u * size - 0.5, 0, size - 1)
    y = np.clip(v * size - 0.5, 0, size - 1)
    xa, ya = np.minimum(np.floor(x).astype(int), size - 2), np.minimum(np.floor(y).astype(int),
                                                                        size - 2)
    fx, fy = (x - xa)[..., None].astype(np.float32), (y - ya)[..., None].astype(np.float32)
    c = crop.astype(np.float32)
    top = c[ya, xa] * (1 - fx) + c[ya, xa + 1] * fx
    bottom = c[ya + 1, xa] * (1 - fx) + c[ya + 1, xa + 1] * fx
    return top * (1 - fy) + bottom * fy


def match_colour(face: np.ndarray, photo: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """face, photo float [h,w,3], weight [h,w] -> the face with each channel's weighted
    mean and spread moved to the photo's under the same weights (the generator's colour
    cast removed; contrast scaled by at most STD_RATIO)."""
    w = weight[..., None] / max(float(weight.sum()), 1e-6)
    mean_f, mean_p = (face * w).sum((0, 1)), (photo * w).sum((0, 1))
    std_f = np.sqrt(((face - mean_f) ** 2 * w).sum((0, 1)))
    std_p = np.sqrt(((photo - mean_p) ** 2 * w).sum((0, 1)))
    ratio = np.clip(std_p / np.maximum(std_f, 1e-3), *STD_RATIO)
    return (face - mean_f) * ratio + mean_p


def paste_face(photo: np.ndarray, crop: np.ndarray, quad: np.ndarray,
               colour_match: bool = False) -> None:
    """Blend one edited crop [R,R,3] uint8 into photo [H,W,3] uint8 in place, where its
    quad [4,2] says it came from; pixels where the mask is 0 are not written."""
    box, u, v = crop_coordinates(quad, photo.shape[:2])
    if box is None:
        return
    y0, y1, x0, x1 = box
    alpha = face_mask(u, v)                             # [h,w]
    if not alpha.any():
        return
    region = photo[y0:y1, x0:x1]
    original = region.astype(np.float32)
    face = sample(crop, u, v)
    if colour_match:
        face = match_colour(face, original, alpha)
    blended = original + alpha[..., None] * (face - original)
    inside = alpha > 0
    region[inside] = np.clip(np.rint(blended[inside]), 0, 255).astype(np.uint8)


def quad_area(quad) -> float:
    """The area in pixels^2 of a crop's square, from its corners [4,2]."""
    quad = np.asarray(quad, dtype=np.float64)
    (ax, ay), (bx, by) = quad[3] - quad[0], quad[1] - quad[0]
    return abs(ax * by - ay * bx)


def paste_back(photo, faces: Sequence[tuple], colour_match: bool = False):
    """A PIL RGB photo and its edited faces, (PIL crop, quad [4,2]) each -> a new PIL
    photo of the same size with every face blended in, the largest first, so a smaller
    face that overlaps it is drawn over it. The photo's info (ICC profile, EXIF) goes
    with the copy."""
    from PIL import Image

    pixels = np.array(photo.convert("RGB"))             # a writable copy [H,W,3]
    for crop, quad in sorted(faces, key=lambda face: -quad_area(face[1])):
        paste_face(pixels, np.asarray(crop.convert("RGB")), np.asarray(quad, dtype=np.float64),
                   colour_match)
    out = Image.fromarray(pixels, "RGB")
    out.info = dict(photo.info)
    return out


def face_regions(shape: tuple[int, int], quads: Sequence) -> np.ndarray:
    """bool [H,W]: the photo pixels that pasting faces at these quads may change (the
    mask is above 0); every other pixel stays the photo's own."""
    region = np.zeros(shape, dtype=bool)
    for quad in quads:
        box, u, v = crop_coordinates(np.asarray(quad, dtype=np.float64), shape)
        if box is not None:
            y0, y1, x0, x1 = box
            region[y0:y1, x0:x1] |= face_mask(u, v) > 0
    return region
