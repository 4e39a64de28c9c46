"""FFHQ-style face alignment from dlib's 68-point landmarks.

The detector and the shape predictor are dlib's; the 68-point model file ships in the
`face_recognition_models` package. The crop follows the FFHQ recipe: an oriented square
centred between the eyes and the mouth, sized from the eye distance and the
eye-to-mouth distance, resampled to the output size.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from vrfam_rt.errors import MissingDependency, VrfamError

DETECT_SIDE = 1024     # the face detector's view of a photo, pixels on the longer side
INSTALL_HINT = ("pip install 'vrfam-rt[align]' (dlib-bin, face_recognition_models), or pass "
                "`align=False`")


def predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(f"face alignment needs face_recognition_models: {INSTALL_HINT}")
    return Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quadrilateral [4,2] (corners in x,y) from 68 landmarks [68,2]."""
    eye_left = landmarks[36:42].mean(0)
    eye_right = landmarks[42:48].mean(0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (landmarks[48] + landmarks[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


class NoFaceFound(VrfamError):
    """The detector found no face in a photo (a server words the way out in its own
    terms: the request's `align` input rather than the call's `align=False`)."""


class FaceAligner:
    """Detects the faces in an RGB image and returns their FFHQ-aligned crops."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise MissingDependency(f"face alignment needs dlib: {INSTALL_HINT}") from None
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """[68,2] landmarks of the largest face in an [H,W,3] uint8 image, or None."""
        faces = self.all_landmarks(rgb, limit=1)
        return faces[0] if faces else None

    def all_landmarks(self, rgb: np.ndarray, limit: int | None = None,
                      upsample: int = 1) -> list[np.ndarray]:
        """[68,2] landmarks of each face in an [H,W,3] uint8 image, the largest first
        (at most `limit` of them; None: all).

        The detector (upsampling `upsample` times: once finds faces of about 40 px, at
        four times the cost of none, which finds about 80 px) sees the image shrunk to at most
        DETECT_SIDE pixels a side, so its cost does not grow with the photo; the shape
        predictor then places the landmarks in the full-resolution image.
        """
        import dlib
        from PIL import Image

        scale = max(rgb.shape[:2]) / DETECT_SIDE
        small = rgb
        if scale > 1:
            size = (max(1, round(rgb.shape[1] / scale)), max(1, round(rgb.shape[0] / scale)))
            small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        faces = sorted(self.detector(small, upsample), key=lambda r: -r.width() * r.height())
        found = []
        for face in faces[:limit]:
            if scale > 1:
                face = dlib.rectangle(round(face.left() * scale), round(face.top() * scale),
                                      round(face.right() * scale), round(face.bottom() * scale))
            shape = self.predictor(rgb, face)
            found.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))
        return found

    def follow(self, rgb: np.ndarray, boxes) -> list[np.ndarray]:
        """[68,2] landmarks of the face inside each box (left, top, right, bottom) of an
        [H,W,3] uint8 image: the shape predictor alone (a few ms a face), without the
        detector; what follows a face from one video frame to the next
        (`landmark_box` of the last frame's landmarks)."""
        import dlib

        found = []
        for left, top, right, bottom in boxes:
            shape = self.predictor(rgb, dlib.rectangle(round(left), round(top), round(right),
                                                       round(bottom)))
            found.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))
        return found

    def quad(self, image, source: str = "image") -> np.ndarray:
        """PIL RGB image -> the FFHQ crop of its largest face: corners [4,2] (x,y of the
        upper left, lower left, lower right, upper right) in the image's pixel
        coordinates (PIL's: the top-left pixel spans [0,1)^2), or NoFaceFound."""
        return self.quads(image, source, limit=1)[0]

    def quads(self, image, source: str = "image", limit: int | None = None,
              upsample: int = 1) -> list[np.ndarray]:
        """`quad` for each face of the image (at most `limit`; None: all), the largest
        first; NoFaceFound when there is none. `upsample`: as for `all_landmarks`."""
        found = self.all_landmarks(np.asarray(image), limit, upsample)
        if not found:
            raise NoFaceFound(f"{source}: no face found; use a frontal photo or pass `align=False`")
        return [ffhq_quad(points) + 0.5 for points in found]   # landmarks count pixel centres from 0

    def align(self, image, size: int, source: str = "image"):
        """PIL RGB image -> aligned PIL RGB face of size x size."""
        return warp(image, self.quad(image, source), size)


def landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) of landmarks [68,2]: brows to chin, jaw to
    jaw, about where the detector boxes a face."""
    (left, top), (right, bottom) = points.min(0), points.max(0)
    return float(left), float(top), float(right), float(bottom)


def warp(image, quad: np.ndarray, size: int):
    """The crop of PIL `image` whose corners are `quad` [4,2] (as FaceAligner.quad gives
    them) resampled to a size x size PIL image; a quad over twice the output size is
    shrunk with the image first, so the bilinear resampling does not alias."""
    from PIL import Image

    side = np.hypot(*(quad[3] - quad[0]))
    if side > 2 * size:
        factor = side / (2 * size)
        small = image.resize((max(1, round(image.width / factor)),
                              max(1, round(image.height / factor))), Image.LANCZOS)
        quad = quad * [small.width / image.width, small.height / image.height]
        image = small
    return image.transform((size, size), Image.QUAD, quad.flatten().tolist(), Image.BILINEAR)
