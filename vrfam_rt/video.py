"""Video: a clip's faces edited frame by frame, streamed (PyAV), the audio copied as is.

clip -> decode (PyAV) -> per frame: find the faces (EditPipeline.locate), follow each
from frame to frame and smooth its crop square over time (a one-euro filter: still faces
hold still, moving ones follow without lag; every track restarts on a scene cut) ->
batches of frames through EditPipeline.invert_at / edit (pasted back) -> encode at the
source's size and frame rate (H.264 yuv420p; VP9 in a .webm, whose format does not hold
H.264) -> the file, renamed into place only once whole.

At most `batch` decoded frames are held at a time, so memory does not grow with the clip.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from vrfam_rt.errors import MissingDependency, VrfamError

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm"}
FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
CODECS = {".webm": "libvpx-vp9"}          # the rest: H.264 (libx264), else MPEG-4 part 2
CRF = "18"                               # x264/VP9 quality: visually lossless for most clips
SCENE_CUT = 30.0       # mean |difference| of two frames' 32x32 gray thumbnails (levels)
MIN_CUTOFF = 1.0       # one-euro filter: cutoff (Hz) of a still face's square
BETA = 1.0             # how fast the cutoff rises with speed (per face side per second)
D_CUTOFF = 1.0         # cutoff (Hz) of the speed estimate
INSTALL = "video needs PyAV: pip install av"


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class OneEuro:
    """The one-euro filter (Casiez et al., CHI 2012) over a quad [4,2], in units of the
    quad's side so that its settings hold for faces of any size."""

    def __init__(self, rate: float, min_cutoff: float = MIN_CUTOFF, beta: float = BETA,
                 d_cutoff: float = D_CUTOFF):
        self.period = 1.0 / rate                      # seconds between frames
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None          # [4,2] the filtered quad
        self.speed = np.zeros((4, 2))                 # [4,2] its filtered speed, sides/s

    def _alpha(self, cutoff: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / self.period)

    def __call__(self, quad: np.ndarray) -> np.ndarray:
        if self.value is None:
            self.value = quad.copy()
            return quad
        side = max(float(np.hypot(*(quad[3] - quad[0]))), 1.0)
        speed = (quad - self.value) / side / self.period
        self.speed += self._alpha(self.d_cutoff) * (speed - self.speed)
        cutoff = self.min_cutoff + self.beta * float(np.abs(self.speed).max())
        self.value = self.value + self._alpha(cutoff) * (quad - self.value)
        return self.value.copy()


@dataclass
class FaceTracks:
    """Faces followed from frame to frame: a face found near (within half a side of)
    where a track's face was continues it; a track without a face ends; on a scene cut
    (`cut`) every track ends. `smooth` False hands the found quads through."""

    rate: float                                       # frames per second
    smooth: bool = True
    tracks: list = field(default_factory=list)        # [(centre [2], OneEuro)]
    thumbnail: np.ndarray | None = None               # [32,32] the last frame, gray

    def cut(self, frame) -> bool:
        """Whether the frame (PIL RGB) starts a new scene; if so every track ends."""
        thumbnail = np.asarray(frame.convert("L").resize((32, 32)), dtype=np.float32)
        cut = self.thumbnail is not None and \
            np.abs(thumbnail - self.thumbnail).mean() > SCENE_CUT
        if cut:
            self.tracks = []
        self.thumbnail = thumbnail
        return cut

    def __call__(self, quads: list[np.ndarray]) -> list[np.ndarray]:
        """The quads of a frame's faces -> the quads to cut them at."""
        if not self.smooth:
            return quads
        kept, out = [], []
        for quad in quads:
            centre, side = quad.mean(0), np.hypot(*(quad[3] - quad[0]))
            near = [t for t in self.tracks if np.hypot(*(t[0] - centre)) < side / 2]
            track = min(near, key=lambda t: np.hypot(*(t[0] - centre))) if near \
                else (centre, OneEuro(self.rate))
            if near:
                self.tracks.remove(track)
            smoothed = track[1](quad)
            kept.append((smoothed.mean(0), track[1]))
            out.append(smoothed)
        self.tracks = kept
        return out


@dataclass(frozen=True)
class VideoReport:
    """What `edit_video` wrote."""

    path: Path                  # the finished file
    frames: int                 # frames written (every frame of the part edited)
    edited: int                 # frames with at least one face edited
    rate: Fraction              # frames per second, the source's
    size: tuple[int, int]       # width, height, the source's
    codec: str                  # the video encoder used
    audio: bool                 # whether an audio stream was copied
    quads: tuple = ()           # per frame, the quads its faces were cut at


def probe(path: str | Path) -> tuple[int, Fraction, tuple[int, int]]:
    """A clip's (frame count, or an estimate from its duration; frame rate; size)."""
    av = _av()
    with _open(av, path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        frames = stream.frames or int(round(float((stream.duration or 0) * stream.time_base)
                                            * rate)) or int(
            round((container.duration or 0) / 1e6 * float(rate)))
        return frames, Fraction(rate), (stream.codec_context.width, stream.codec_context.height)


def edit_video(pipe, source: str | Path, target: str | Path, edit, start: float = 0.0,
               duration: float | None = None, faces="all", smooth: bool = True,
               color_match: bool = False, batch: int | None = None,
               progress: Callable[[int], None] | None = None,
               provenance: dict | None = None, upsample: int = 0,
               detect_rate: float | None = None) -> VideoReport:
    """Write `target`, the clip `source` with its faces edited by `edit` (an Edit or a
    mapping {attribute: alpha}) on EditPipeline `pipe`, from `start` seconds for
    `duration` seconds (None: to the end). `batch` frames go through the pipeline at a
    time (default: the pipeline's max_batch); `progress(n)` hears of every n frames
    written; `provenance` (how it was made) goes into the file's comment tag, where
    `read_provenance` finds it; `upsample` 0 finds faces of 80 px and more in a frame,
    1 down to 40 px at four times the detector's cost (EditPipeline.locate).
    `detect_rate`: None runs the detector on every frame; a number runs it that many
    times a second (and on a scene cut, and while no face is found) and follows the
    faces in between with the shape predictor alone: faster (the detector costs ~0.1 s
    a 640x480 frame, the predictor a few ms a face), with more jitter
    (benchmarks/results/video-cpu.md). Nothing is left under `target` unless it is
    whole."""
    from vrfam_rt.fileio import atomic_file
    from vrfam_rt.pipeline import as_edit

    av = _av()
    source, target = Path(source), Path(target)
    edit = as_edit(edit, pipe.attributes)
    if start < 0 or (duration is not None and duration <= 0):
        raise VrfamError(f"{source}: start must be >= 0 and duration > 0 seconds")
    batch = batch or pipe.max_batch
    with _open(av, source) as reader, atomic_file(target) as tmp:
        video = reader.streams.video[0]
        audio = reader.streams.audio[0] if reader.streams.audio else None
        rate = Fraction(video.average_rate or video.guessed_rate or 25)
        width, height = video.codec_context.width, video.codec_context.height
        with av.open(str(tmp), "w", format=FORMATS.get(target.suffix.lower(), "mp4")) as writer:
            if provenance is not None:
                writer.metadata["comment"] = _comment(provenance)
            codec = _video_stream(av, writer, target, rate, width, height)
            copied = writer.add_stream_from_template(audio) if audio is not None else None
            end = math.inf if duration is None else start + duration
            if start > 0:
                reader.seek(int(start / video.time_base), stream=video, backward=True)
            tracks = FaceTracks(float(rate), smooth)
            frames, counts, quads, decoded, boxes, redetect = [], [0, 0], [], 0, [], 0

            def flush():
                counts[1] += _write(pipe, writer, codec, frames, edit, color_match, counts[0])
                counts[0] += len(frames)
                if progress:
                    progress(len(frames))
                frames.clear()

            streams = [video] + ([audio] if audio is not None else [])
            for packet in reader.demux(*streams):
                if packet.stream is audio:
                    _copy(packet, copied, start, end)
                    continue
                for frame in packet.decode():
                    decoded += 1             # a frame without a time stamp: its index's
                    seconds = float(frame.pts * video.time_base) if frame.pts is not None \
                        else (decoded - 1) / float(rate)
                    if seconds < start - 1e-6 or seconds >= end - 1e-6:
                        continue
                    photo = frame.to_image()                   # PIL RGB
                    if tracks.cut(photo) or decoded >= redetect or not boxes:
                        located = pipe.locate(photo, faces, upsample)
                        redetect = decoded + (max(1, round(float(rate) / detect_rate))
                                              if detect_rate else 1)
                    else:
                        located = pipe.locate(photo, near=boxes)
                    boxes = [box for _, box in located]
                    found = tracks([quad for quad, _ in located])
                    frames.append((frame, photo, found))
                    quads.append(tuple(found))
                    if len(frames) == batch:
                        flush()
            if frames:
                flush()
            for packet in codec.encode():                      # the encoder's last frames
                writer.mux(packet)
        if not counts[0]:                 # raised before the file is renamed into place
            raise VrfamError(f"{source}: no frames between {start:g} s and "
                             f"{'the end' if duration is None else f'{end:g} s'}")
    return VideoReport(target, counts[0], counts[1], rate, (width, height), codec.name,
                       copied is not None, tuple(quads))


def _comment(provenance: dict) -> str:
    """The clip's comment tag: what `vrfam_rt.images.read_provenance` reads back."""
    import json

    from vrfam_rt.images import PROVENANCE_KEY
    from vrfam_rt.version import __version__

    return f"{PROVENANCE_KEY} {__version__} " + json.dumps(provenance, sort_keys=True)


def _write(pipe, writer, stream, frames: list, edit, color_match: bool, first: int) -> int:
    """Edit one batch of (decoded frame, its PIL RGB picture, quads) through the
    pipeline, paste back, encode as frames `first`, `first` + 1, ...; a frame without
    a face goes to the encoder as decoded, and of one with faces only the face regions
    change (`splice`). Returns the number of frames that had a face."""
    av = _av()
    photos = [photo for _, photo, _ in frames]
    inversion = pipe.invert_at(photos, [found for _, _, found in frames])
    result = pipe.edit(inversion, edit, color_match=color_match)
    edited = 0
    for i, (decoded, _, found) in enumerate(frames):
        frame = decoded
        if result.photos[i] is not None:
            edited += 1
            frame = splice(av, decoded, result.photos[i][0], found)
        frame.pts, frame.time_base = first + i, 1 / stream.codec_context.framerate
        for packet in stream.encode(frame.reformat(format=stream.pix_fmt)):
            writer.mux(packet)
    return edited


def splice(av, decoded, photo, quads):
    """The decoded frame with the pixels of its face regions (vrfam_rt.pasteback) taken
    from `photo`, its edited picture (PIL RGB), in YUV 4:2:0: everything else keeps the
    decoder's values, where a trip through RGB and back (swscale's 8-bit rounding)
    would shift a flat colour by a level or two. A frame whose height is not a multiple
    of 4 (nor width of 2) goes through RGB."""
    from vrfam_rt.pasteback import face_regions

    width, height = photo.size
    edited = av.VideoFrame.from_ndarray(np.asarray(photo), format="rgb24")
    if width % 2 or height % 4:
        return edited
    original = decoded.reformat(format="yuv420p").to_ndarray()       # [H*3/2, W]
    changed = edited.reformat(format="yuv420p").to_ndarray()
    region = face_regions((height, width), quads)                     # [H,W]
    chroma = region.reshape(height // 2, 2, width // 2, 2).any((1, 3)).reshape(height // 4, -1)
    # yuv420p as one array: H rows of Y, then U and V, each H/4 rows of W (two chroma rows
    # of W/2 per array row)
    where = np.concatenate([region, chroma, chroma])
    return av.VideoFrame.from_ndarray(np.where(where, changed, original), format="yuv420p")


def _copy(packet, stream, start: float, end: float) -> None:
    """Mux an audio packet, untouched but for its time shifted by `start`, if it falls
    in [start, end) (from the start of the clip: any before 0 too, an encoder's
    priming)."""
    if packet.dts is None or stream is None:
        return
    seconds = float(packet.pts * packet.time_base)
    if (start > 0 and seconds < start - 1e-6) or seconds >= end - 1e-6:
        return
    shift = int(round(start / packet.time_base))
    packet.pts -= shift
    packet.dts -= shift
    packet.stream = stream
    stream.container.mux(packet)


def _video_stream(av, writer, target: Path, rate: Fraction, width: int, height: int):
    """The output's video stream: H.264 yuv420p (VP9 for .webm) at the source's rate and
    size; MPEG-4 part 2 where this PyAV build has no H.264 encoder."""
    name = CODECS.get(target.suffix.lower(), "libx264")
    try:
        av.codec.Codec(name, "w")
    except av.codec.codec.UnknownCodecError:
        name = "mpeg4"
    stream = writer.add_stream(name, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if name in ("libx264", "libvpx-vp9"):
        stream.options = {"crf": CRF} | ({"b": "0"} if name == "libvpx-vp9" else {})
    return stream


def _open(av, path: str | Path):
    """A clip opened for reading, or a VrfamError naming it."""
    path = Path(path)
    if not path.is_file():
        raise VrfamError(f"{path}: no such file" if not path.exists() else
                         f"{path} is a folder, not a video")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VrfamError(f"{path}: not a readable video "
                         f"({getattr(exc, 'strerror', None) or exc})") from None
    if not container.streams.video:
        container.close()
        raise VrfamError(f"{path}: holds no video stream")
    return container


def _av():
    try:
        import av
    except ImportError:
        raise MissingDependency(INSTALL) from None
    return av
