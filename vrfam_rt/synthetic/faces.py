"""Procedural cartoon faces with known attributes and identities: a stand-in for FFHQ.

A face is a stack of soft shapes (signed distances, anti-aliased by a sigmoid of
distance over pixel size) drawn in an aligned face frame, then posed on the canvas
with a small roll, shift and scale. The face frame follows an FFHQ crop: eyes near
y = -0.05, mouth near y = 0.40, chin near y = 0.68 on a [-1, 1] canvas (x right,
y down).

What is drawn comes from three parts of `FaceParams`:
- attributes, 0/1 in `ATTRIBUTES` order (the `tiny` config's transformer order);
- identity, values in [0, 1] named by `IDENTITY_FIELDS` (face shape, eye spacing,
  nose, skin tone, ...), shared by all views of one person;
- nuisance, values in [0, 1] named by `NUISANCE_FIELDS` (pose, background, light).

Everything is batched torch arithmetic without reductions, so the same parameters
give bitwise the same images, and `sample_params` is seeded through its own
`torch.Generator`.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import write_text_atomic

ATTRIBUTES = ("Smiling", "Eyeglasses", "Male", "Young", "Bangs", "Black_Hair", "Blond_Hair",
              "Mouth_Slightly_Open", "Pale_Skin")
IDENTITY_FIELDS = ("face_width", "face_length", "jaw", "eye_spacing", "eye_height", "eye_size",
                   "iris", "brow", "nose_length", "nose_width", "mouth_width", "skin_tone",
                   "hair_shade", "hair_volume", "fringe", "beard")
NUISANCE_FIELDS = ("roll", "shift_x", "shift_y", "scale", "yaw", "bg_r", "bg_g", "bg_b",
                   "bg_gradient", "light_x", "light_y", "light_strength", "cloth_r", "cloth_g",
                   "cloth_b", "frame_tone")
EXCLUSIVE = (("Black_Hair", "Blond_Hair"),)  # at most one of each group is set


@dataclasses.dataclass(frozen=True)
class FaceParams:
    """Everything that decides one batch of renders; all tensors share the batch n."""

    attributes: torch.Tensor   # [n, len(ATTRIBUTES)] float 0/1
    identity: torch.Tensor     # [n, len(IDENTITY_FIELDS)] float in [0, 1]
    nuisance: torch.Tensor     # [n, len(NUISANCE_FIELDS)] float in [0, 1]
    identity_id: torch.Tensor  # [n] int64; equal ids share `identity`

    def __post_init__(self):
        n = self.attributes.shape[0]
        shapes = {"attributes": (n, len(ATTRIBUTES)), "identity": (n, len(IDENTITY_FIELDS)),
                  "nuisance": (n, len(NUISANCE_FIELDS)), "identity_id": (n,)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise VrfamError(f"FaceParams.{name} has shape "
                                 f"{tuple(getattr(self, name).shape)}, expected {shape}")

    def __len__(self) -> int:
        return self.attributes.shape[0]

    def __getitem__(self, index) -> "FaceParams":
        """Rows `index` (a slice, an int tensor or a bool mask) as a new FaceParams."""
        return FaceParams(self.attributes[index], self.identity[index], self.nuisance[index],
                          self.identity_id[index])

    def attribute(self, name: str) -> torch.Tensor:
        return self.attributes[:, _index(ATTRIBUTES, name, "attribute")]

    def with_attributes(self, **values) -> "FaceParams":
        """The same people in the same scenes with some attributes set (0/1 or [n] tensors).

        Setting one hair colour to 1 clears the other (they are exclusive), unless both
        are given, which must not both be 1. Example: `p.with_attributes(Smiling=1)`.
        """
        attrs = self.attributes.clone()
        for name, value in values.items():
            attrs[:, _index(ATTRIBUTES, name, "attribute")] = torch.as_tensor(value,
                                                                             dtype=attrs.dtype)
        for group in EXCLUSIVE:
            given = [a for a in group if a in values]
            columns = [ATTRIBUTES.index(a) for a in group]
            if len(given) == 1:
                own = ATTRIBUTES.index(given[0])
                for col in columns:
                    if col != own:
                        attrs[:, col] = attrs[:, col] * (1 - attrs[:, own])
            if (attrs[:, columns].sum(1) > 1).any():
                raise VrfamError(f"attributes {' and '.join(group)} cannot both be 1")
        return dataclasses.replace(self, attributes=attrs)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).contiguous() for f in dataclasses.fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "FaceParams":
        try:
            return cls(**{f.name: tensors[f.name] for f in dataclasses.fields(cls)})
        except KeyError as exc:
            raise VrfamError(f"face parameters lack the tensor {exc}") from None


def _index(names: tuple[str, ...], name: str, kind: str) -> int:
    if name not in names:
        raise VrfamError(f"unknown {kind} {name!r}; choose one of {', '.join(names)}")
    return names.index(name)


def sample_params(n: int, seed: int, views: int = 1) -> FaceParams:
    """n faces of ceil(n / views) people, each seen `views` times in a row.

    The views of one person share the identity vector; attributes and nuisance are
    drawn per view, so one person appears smiling and not, with glasses and without.
    Attribute priors (30-60% positive) carry some correlations: men less often
    have bangs or blond hair, older people more often wear glasses, open mouths go
    with smiles, and pale skin with lighter skin tones.
    """
    if n < 1 or views < 1:
        raise VrfamError(f"sample_params needs n >= 1 and views >= 1 (got {n}, {views})")
    g = torch.Generator().manual_seed(seed)
    people = -(-n // views)
    identity = torch.rand(people, len(IDENTITY_FIELDS), generator=g)
    identity = identity.repeat_interleave(views, 0)[:n]
    identity_id = torch.arange(people).repeat_interleave(views)[:n]
    u = torch.rand(n, 8, generator=g)
    nuisance = torch.rand(n, len(NUISANCE_FIELDS), generator=g)
    return params_from_uniforms(identity, u, nuisance, identity_id)


def params_from_uniforms(identity: torch.Tensor, u: torch.Tensor, nuisance: torch.Tensor,
                         identity_id: torch.Tensor | None = None) -> FaceParams:
    """Face parameters from uniforms in [0, 1]: the attribute priors of `sample_params`.

    identity: [n, len(IDENTITY_FIELDS)], used as is
    u: [n, 8] attribute draws, thresholded into the 9 attributes (hair colour shares one)
    nuisance: [n, len(NUISANCE_FIELDS)], used as is
    identity_id: [n] int64 (default: every face its own person, arange(n))
    """
    n = u.shape[0]
    if identity_id is None:
        identity_id = torch.arange(n)
    male = u[:, 0] < 0.5
    young = u[:, 1] < 0.6
    smiling = u[:, 2] < 0.5
    mouth_open = u[:, 3] < torch.where(smiling, 0.6, 0.3)
    glasses = u[:, 4] < torch.where(young, 0.25, 0.5)
    bangs = u[:, 5] < torch.where(male, 0.2, 0.55)
    black = u[:, 6] < 0.35
    blond = ~black & (u[:, 6] < torch.where(male, 0.55, 0.8))
    tone = identity[:, IDENTITY_FIELDS.index("skin_tone")]
    pale = u[:, 7] < 0.65 - 0.6 * tone
    columns = {"Smiling": smiling, "Eyeglasses": glasses, "Male": male, "Young": young,
               "Bangs": bangs, "Black_Hair": black, "Blond_Hair": blond,
               "Mouth_Slightly_Open": mouth_open, "Pale_Skin": pale}
    attributes = torch.stack([columns[a] for a in ATTRIBUTES], 1).float()
    return FaceParams(attributes, identity, nuisance, identity_id)


NOISE_DIMS = len(IDENTITY_FIELDS) + 8 + len(NUISANCE_FIELDS)  # 40 leading dims of z used


def params_from_noise(z: torch.Tensor) -> FaceParams:
    """z [n, D >= NOISE_DIMS] ~ N(0, I) -> the faces a generator with that z should draw.

    The normal CDF of z[:, :40] gives uniforms, split as identity (16), attribute draws
    (8) and nuisance (16), then `params_from_uniforms`; the other dims are unused. So
    z ~ N(0, I) yields faces distributed as `sample_params`' (one view per person).
    """
    if z.ndim != 2 or z.shape[1] < NOISE_DIMS:
        raise VrfamError(f"params_from_noise needs z of shape [n, >= {NOISE_DIMS}], got "
                         f"{tuple(z.shape)}; use a config with style_dim >= {NOISE_DIMS}")
    u = torch.special.ndtr(z[:, :NOISE_DIMS].float())
    i, a = len(IDENTITY_FIELDS), len(IDENTITY_FIELDS) + 8
    return params_from_uniforms(u[:, :i], u[:, i:a], u[:, a:])


# ---- signed distances (negative inside) on [n,1,H,W] coordinate grids ----

def sd_ellipse(x, y, cx, cy, rx, ry):
    """Axis-aligned ellipse, first-order distance (u^2+v^2-1)/|grad|; exact on the rim."""
    u, v = (x - cx) / rx, (y - cy) / ry
    grad = 2 * torch.sqrt((u / rx) ** 2 + (v / ry) ** 2).clamp_min(1e-6)
    return (u * u + v * v - 1) / grad


def sd_segment(x, y, ax, ay, bx, by):
    """Unsigned distance to the segment a-b."""
    px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
    t = ((px * dx + py * dy) / (dx * dx + dy * dy).clamp_min(1e-9)).clamp(0, 1)
    return torch.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2)


def sd_arc(x, y, cx, cy, half_width, lift):
    """Unsigned distance to the parabola y = cy - lift (x-cx)^2 / half_width^2, |x-cx| <= w.

    lift > 0 raises the ends (a smile when y points down).
    """
    t = (x - cx).clamp(-half_width, half_width)
    slope = -2 * lift * t / half_width ** 2
    dy = (y - (cy - lift * (t / half_width) ** 2)) / torch.sqrt(1 + slope * slope)
    return torch.sqrt((x - cx - t) ** 2 + dy * dy)


def _lerp(lo, hi, t):
    return lo + (hi - lo) * t


def _rgb(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(1, 3, 1, 1)


SKIN_LIGHT, SKIN_DARK = _rgb(0.94, 0.77, 0.63), _rgb(0.55, 0.36, 0.24)
SKIN_PALE = _rgb(1.0, 0.95, 0.93)
HAIR_BLACK = (_rgb(0.05, 0.04, 0.04), _rgb(0.16, 0.13, 0.12))
HAIR_BLOND = (_rgb(0.86, 0.70, 0.38), _rgb(0.98, 0.89, 0.60))
HAIR_BROWN = (_rgb(0.38, 0.22, 0.11), _rgb(0.62, 0.33, 0.14))
HAIR_GRAY = _rgb(0.80, 0.80, 0.84)
IRIS = (_rgb(0.12, 0.25, 0.45), _rgb(0.30, 0.18, 0.08))
LIPS, MOUTH_INSIDE, TEETH = _rgb(0.70, 0.25, 0.25), _rgb(0.30, 0.06, 0.08), _rgb(0.97, 0.96, 0.92)


class _Canvas:
    """Per-sample face-frame coordinates of each pixel and the image painted so far."""

    def __init__(self, pose: dict, n: int, size: int, sharpness: float = 2.5):
        centers = (torch.arange(size, dtype=torch.float32) + 0.5) * (2 / size) - 1
        gy, gx = centers.view(1, 1, size, 1), centers.view(1, 1, 1, size)
        angle, scale = pose["roll"], pose["scale"]
        dx, dy = gx - pose["shift_x"], gy - pose["shift_y"]
        cos, sin = torch.cos(angle), torch.sin(angle)
        self.x = (cos * dx + sin * dy) / scale          # [n,1,H,W] face frame
        self.y = (-sin * dx + cos * dy) / scale
        self.gx, self.gy = gx, gy                       # [1,1,1,W], [1,1,H,1] canvas
        self.slope = sharpness * scale * size / 2       # 1 / (pixel size in face units)
        self.image = torch.zeros(n, 3, size, size)

    def coverage(self, d):
        return torch.sigmoid(-d * self.slope)

    def paint(self, d, color, opacity=1.0):
        """Blend `color` [n|1,3,1,1] over the pixels inside distance field d [n,1,H,W]."""
        alpha = self.coverage(d) * opacity
        self.image = self.image + alpha * (color - self.image)


def _columns(values: torch.Tensor, names: tuple[str, ...]) -> dict:
    return {name: values[:, i].view(-1, 1, 1, 1) for i, name in enumerate(names)}


def _look(params: FaceParams) -> dict:
    """Attributes, identity and nuisance mapped to drawing quantities, each [n,1,1,1]."""
    a = _columns(params.attributes, ATTRIBUTES)
    i = _columns(params.identity, IDENTITY_FIELDS)
    s = _columns(params.nuisance, NUISANCE_FIELDS)
    old = 1 - a["Young"]
    hair = (a["Black_Hair"] * _lerp(*HAIR_BLACK, i["hair_shade"])
            + a["Blond_Hair"] * _lerp(*HAIR_BLOND, i["hair_shade"])
            + (1 - a["Black_Hair"] - a["Blond_Hair"]) * _lerp(*HAIR_BROWN, i["hair_shade"]))
    hair = _lerp(hair, HAIR_GRAY, 0.6 * old)
    skin = _lerp(_lerp(SKIN_LIGHT, SKIN_DARK, i["skin_tone"]), SKIN_PALE, 0.72 * a["Pale_Skin"])
    yaw = (s["yaw"] - 0.5) * 0.08
    return {
        "a": a, "old": old, "hair": hair, "skin": skin, "yaw": yaw,
        "face_rx": _lerp(0.40, 0.50, i["face_width"]) + 0.03 * a["Male"],
        "face_ry": _lerp(0.55, 0.63, i["face_length"]),
        "jaw": _lerp(0.10, 0.40, i["jaw"]) - 0.08 * a["Male"],
        "eye_x": _lerp(0.16, 0.24, i["eye_spacing"]),
        "eye_y": _lerp(-0.09, -0.01, i["eye_height"]),
        "eye_r": _lerp(0.085, 0.115, i["eye_size"]),
        "iris": _lerp(*IRIS, i["iris"]),
        "brow_w": _lerp(0.014, 0.024, i["brow"]) + 0.010 * a["Male"],
        "nose_len": _lerp(0.17, 0.27, i["nose_length"]),
        "nose_w": _lerp(0.035, 0.075, i["nose_width"]),
        "mouth_w": _lerp(0.11, 0.16, i["mouth_width"]) + 0.035 * a["Smiling"],
        "hair_volume": _lerp(0.0, 0.10, i["hair_volume"]),
        "fringe": i["fringe"] * 2 * math.pi,
        "beard": a["Male"] * (1.4 * i["beard"] - 0.2).clamp(0, 1),
        # a random colour, 40% desaturated toward a gray whose level reuses the gradient draw
        "bg": _lerp(s["bg_gradient"] * 0.6 + 0.2,
                    torch.stack([s["bg_r"], s["bg_g"], s["bg_b"]], 1).view(-1, 3, 1, 1), 0.6),
        "bg_gradient": _lerp(-0.35, 0.35, s["bg_gradient"]),
        "cloth": torch.stack([s["cloth_r"], s["cloth_g"], s["cloth_b"]], 1).view(-1, 3, 1, 1)
                 * 0.8 + 0.1,
        "light": (_lerp(-1, 1, s["light_x"]), _lerp(-1, 1, s["light_y"]),
                  _lerp(0.0, 0.25, s["light_strength"])),
        "frame": _lerp(_rgb(0.05, 0.05, 0.06), _rgb(0.35, 0.18, 0.10), s["frame_tone"]),
        "pose": {"roll": _lerp(-0.13, 0.13, s["roll"]),          # radians, about +-7 degrees
                 "shift_x": _lerp(-0.05, 0.05, s["shift_x"]),
                 "shift_y": _lerp(-0.04, 0.04, s["shift_y"]),
                 "scale": _lerp(0.93, 1.07, s["scale"])},
    }


FACE_CY = 0.10  # face ellipse centre; its top is near -0.5, the chin near 0.68


def _face_distance(c: _Canvas, k: dict):
    """Face outline: an ellipse whose lower half narrows toward the chin by `jaw`."""
    below = ((c.y - FACE_CY) / k["face_ry"]).clamp(0, 1)
    x = c.x / (1 - k["jaw"] * below * below)
    return sd_ellipse(x, c.y, 0, FACE_CY, k["face_rx"], k["face_ry"])


def _draw_background(c: _Canvas, k: dict):
    shade = 1 + k["bg_gradient"] * c.gy
    c.image = (k["bg"] * shade).clamp(0, 1).expand_as(c.image).clone()


def _draw_back_hair(c: _Canvas, k: dict):
    """Long hair falling to the shoulders, or for men a short cap down to the ears."""
    male = k["a"]["Male"]
    rx = k["face_rx"] + 0.14 + k["hair_volume"]
    long = torch.maximum(sd_ellipse(c.x, c.y, 0, 0.02, rx, 0.90), c.y - 0.80)
    short = torch.maximum(sd_ellipse(c.x, c.y, 0, -0.06, k["face_rx"] + 0.05 + 0.3
                                     * k["hair_volume"], 0.56 + k["hair_volume"]), c.y - 0.08)
    c.paint(long, k["hair"] * 0.93, 1 - male)
    c.paint(short, k["hair"] * 0.93, male)


def _draw_neck_and_shoulders(c: _Canvas, k: dict):
    neck = torch.maximum((c.x.abs() - 0.17), 0.35 - c.y)
    c.paint(neck, k["skin"] * 0.82)
    c.paint(sd_ellipse(c.x, c.y, 0, 1.22, 0.9, 0.42), k["cloth"])


def _draw_ears(c: _Canvas, k: dict):
    """Ears show on men (long hair covers them)."""
    for side in (-1, 1):
        ear = sd_ellipse(c.x, c.y, side * k["face_rx"], 0.02, 0.06, 0.10)
        c.paint(ear, k["skin"] * 0.92, k["a"]["Male"])


def _draw_face(c: _Canvas, k: dict, face):
    """Skin with a darker rim, so the face reads as round."""
    rim = (-face / 0.18).clamp(0, 1)
    c.paint(face, k["skin"] * (0.86 + 0.14 * rim))


def _draw_age(c: _Canvas, k: dict):
    """Forehead lines, nasolabial folds and eye bags for older faces."""
    lines = [sd_arc(c.x, c.y, 0, y, 0.17, -0.02) for y in (-0.30, -0.37)]
    for side in (-1, 1):
        lines.append(sd_segment(c.x, c.y, side * 0.09 + k["yaw"], 0.24,
                                side * (k["mouth_w"] + 0.05) + k["yaw"], 0.44))
        lines.append(sd_arc(c.x, c.y, side * k["eye_x"] + k["yaw"], k["eye_y"] + 0.09,
                            0.06, -0.015))
    d = torch.stack(lines).amin(0) - 0.012
    c.paint(d, k["skin"] * 0.62, 0.85 * k["old"])


def _draw_nose(c: _Canvas, k: dict):
    tip = k["nose_len"]
    x0 = 1.6 * k["yaw"]
    bottom = sd_arc(c.x, c.y, x0, tip, k["nose_w"], -0.02) - 0.012
    side = sd_segment(c.x, c.y, x0 + 0.02, 0.02, x0 + k["nose_w"] * 0.8, tip - 0.03) - 0.008
    c.paint(torch.minimum(bottom, side), k["skin"] * 0.70)


def _draw_beard(c: _Canvas, k: dict, face):
    """Men's beard: the face below a curve from the moustache up to the sideburns; its
    density is the identity's `beard` (some men are clean-shaven)."""
    top = 0.30 - 0.36 * (c.x / k["face_rx"]) ** 2
    c.paint(torch.maximum(face, top - c.y), k["hair"] * 0.9, 0.9 * k["beard"])


def _draw_mouth(c: _Canvas, k: dict):
    """Lips as a curve whose lift is the smile (with dimples and rosy cheeks); an open
    mouth is the dark region between the upper lip and a lower curve, teeth on top."""
    a, w = k["a"], k["mouth_w"]
    x, cy = c.x - 1.2 * k["yaw"], 0.40
    lift = 0.09 * a["Smiling"] - 0.005
    for side in (-1, 1):
        cheek = sd_ellipse(x, c.y, side * (w + 0.09), cy - 0.13, 0.08, 0.055)
        c.paint(cheek, _rgb(0.95, 0.45, 0.45), 0.3 * a["Smiling"])
        dimple = sd_segment(x, c.y, side * (w + 0.03), cy - lift - 0.04,
                            side * (w + 0.035), cy - lift + 0.03) - 0.011
        c.paint(dimple, k["skin"] * 0.65, a["Smiling"])
    opening = 0.12 * a["Mouth_Slightly_Open"]
    t = (x / w).clamp(-1, 1)
    upper = cy - lift * t * t
    lower = upper + opening * (1 - t * t)
    inside = torch.maximum(torch.maximum(upper - c.y, c.y - lower), x.abs() - w)
    line = sd_arc(x, c.y, 0, cy, w, lift) - 0.016
    c.paint(inside, MOUTH_INSIDE, a["Mouth_Slightly_Open"])
    c.paint(torch.maximum(inside, c.y - upper - 0.035), TEETH, a["Mouth_Slightly_Open"])
    c.paint(torch.minimum(line, inside.abs() - 0.014), LIPS)


def _draw_eyes(c: _Canvas, k: dict):
    """Sclera, iris and pupil; eyebrows above. Smiles narrow the eyes."""
    r, squint = k["eye_r"], 1 - 0.3 * k["a"]["Smiling"]
    for side in (-1, 1):
        ex, ey = side * k["eye_x"] + k["yaw"], k["eye_y"]
        sclera = sd_ellipse(c.x, c.y, ex, ey, r, 0.55 * r * squint)
        c.paint(sclera - 0.01, k["skin"] * 0.45)
        c.paint(sclera, _rgb(0.97, 0.97, 0.97))
        iris = torch.maximum(sd_ellipse(c.x, c.y, ex + 1.5 * k["yaw"], ey, 0.48 * r, 0.48 * r),
                             sclera)
        c.paint(iris, k["iris"])
        c.paint(torch.maximum(iris + 0.26 * r, sclera), _rgb(0.02, 0.02, 0.02))
        brow = sd_arc(c.x, c.y, ex + side * 0.01, ey - 0.115, 0.10, -0.025) - k["brow_w"]
        c.paint(brow, k["hair"] * 0.75)


def _draw_front_hair(c: _Canvas, k: dict, face):
    """Hair over the top of the head down to the hairline; bangs lower it to a
    jagged fringe just above the eyebrows."""
    a = k["a"]
    rx = k["face_rx"] + 0.05 + 0.3 * k["hair_volume"]
    cap = sd_ellipse(c.x, c.y, 0, 0.0, rx, 0.62 + k["hair_volume"])
    edge = (c.x / rx) ** 2
    hairline = _lerp(-0.40 + 0.30 * edge, -0.22 + 0.05 * edge
                     + 0.025 * torch.sin(c.x * 40 + k["fringe"]), a["Bangs"])
    hair = torch.maximum(cap, c.y - hairline)
    c.paint(torch.maximum(hair - 0.03, face), k["skin"] * 0.7, 0.5)
    near_edge = ((c.y - hairline) / 0.12 + 1).clamp(0, 1)
    strands = 1 + 0.07 * near_edge * torch.sin(c.x * 45 + 2 * k["fringe"])
    c.paint(hair, k["hair"] * strands)


def _draw_glasses(c: _Canvas, k: dict):
    """Two rims, a bridge and temple arms; lenses with a faint tint."""
    rx, ry = k["eye_r"] + 0.05, k["eye_r"] * 0.55 + 0.045
    on = k["a"]["Eyeglasses"]
    parts = []
    for side in (-1, 1):
        ex, ey = side * k["eye_x"] + k["yaw"], k["eye_y"]
        lens = sd_ellipse(c.x, c.y, ex, ey, rx, ry)
        c.paint(lens, _rgb(0.85, 0.90, 0.95), 0.18 * on)
        parts.append(lens.abs() - 0.017)
        parts.append(sd_segment(c.x, c.y, ex + side * rx, ey - 0.02,
                                side * (k["face_rx"] + 0.02), ey - 0.04) - 0.013)
    parts.append(sd_arc(c.x, c.y, k["yaw"], k["eye_y"] - 0.015, k["eye_x"] - rx + 0.01,
                        0.02) - 0.014)
    c.paint(torch.stack(parts).amin(0), k["frame"], on)


def _draw_lighting(c: _Canvas, k: dict):
    lx, ly, strength = k["light"]
    norm = torch.sqrt(lx * lx + ly * ly).clamp_min(1e-6)
    c.image = c.image * (1 + strength * (lx * c.gx + ly * c.gy) / norm)


def render(params: FaceParams, size: int = 64, chunk: int = 256) -> torch.Tensor:
    """Faces for `params` -> float32 [n, 3, size, size] in [-1, 1] (drawn `chunk` at a time)."""
    if size < 16:
        raise VrfamError(f"render size {size} is below 16 px; use 64 or 128")
    chunks = [_render_chunk(params[i:i + chunk], size) for i in range(0, len(params), chunk)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 3, size, size)


def _render_chunk(params: FaceParams, size: int) -> torch.Tensor:
    k = _look(params)
    c = _Canvas(k["pose"], len(params), size)
    face = _face_distance(c, k)
    _draw_background(c, k)
    _draw_back_hair(c, k)
    _draw_neck_and_shoulders(c, k)
    _draw_ears(c, k)
    _draw_face(c, k, face)
    _draw_age(c, k)
    _draw_nose(c, k)
    _draw_beard(c, k, face)
    _draw_mouth(c, k)
    _draw_eyes(c, k)
    _draw_front_hair(c, k, face)
    _draw_glasses(c, k)
    _draw_lighting(c, k)
    return (c.image.clamp(0, 1) * 2 - 1).contiguous()


def contact_sheet(images: torch.Tensor, columns: int, pad: int = 2) -> torch.Tensor:
    """[n,3,H,W] in [-1,1] -> one [3, rows*(H+pad)+pad, columns*(W+pad)+pad] grid on white."""
    n, _, h, w = images.shape
    rows = -(-n // columns)
    sheet = torch.ones(3, rows * (h + pad) + pad, columns * (w + pad) + pad)
    for i in range(n):
        r, q = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        sheet[:, top:top + h, left:left + w] = images[i]
    return sheet


def write_attr_file(path: Path, files: list[str], attributes: torch.Tensor,
                    names: tuple[str, ...] = ATTRIBUTES) -> None:
    """CelebA's list_attr_celeba.txt layout: a count line, a names line, then one
    `file +1/-1 ...` row per image (attributes [n, len(names)] 0/1)."""
    rows = [str(len(files)), " ".join(names)]
    for file, row in zip(files, attributes.tolist(), strict=True):
        rows.append(" ".join([file] + [" 1" if v > 0.5 else "-1" for v in row]))
    write_text_atomic(path, "\n".join(rows) + "\n")


def read_attr_file(path: Path) -> tuple[list[str], tuple[str, ...], torch.Tensor]:
    """list_attr_celeba.txt -> (files, attribute names, [n, len(names)] float 0/1)."""
    lines = Path(path).read_text().splitlines()
    try:
        count, names = int(lines[0]), tuple(lines[1].split())
        rows = [line.split() for line in lines[2:] if line.strip()]
        values = [[float(int(v) > 0) for v in row[1:]] for row in rows]
    except (IndexError, ValueError) as exc:
        raise VrfamError(f"{path}: not a CelebA attribute list ({exc})") from None
    if len(rows) != count or any(len(row) != len(names) + 1 for row in rows):
        raise VrfamError(f"{path}: {len(rows)} rows of {count} announced, or a row without "
                         f"{len(names)} values")
    return [row[0] for row in rows], names, torch.tensor(values).view(len(rows), len(names))
