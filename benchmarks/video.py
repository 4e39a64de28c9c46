"""Video editing speed and steadiness: frames/s per backend and precision, and flicker.

    python -m vrfam_rt.benchmarks.video --config default --path eager:fp32 --path ort:fp32 \
        --json benchmarks/results/video-default-cpu.json

The clip is made here, offline: SECONDS of Grace Hopper's photo (matplotlib's sample)
drifting across a plain canvas at RATE frames/s with a 440 Hz tone, H.264 + AAC. Each
path edits it whole (`edit_video`, Smiling +1) once to warm up (graph export, plan
builds, calibration land in the cache) and once timed: frames/s = frames / seconds.

Flicker: the mean |frame t - frame t-1| over the pixels of the face region (where
paste-back may write, in frame t), output against input, with the one-euro smoothing of
the alignment and without (the first path only). A ratio of 1 is the input's own change
(the drift); above it, what the edit adds from frame to frame.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import numpy as np

RATE, SECONDS, SIZE = 24, 2, (640, 480)


def make_clip(path, seconds: float = SECONDS, rate: int = RATE, size=SIZE, blank: int = 0,
              audio: bool = True, crf: str = "12"):
    """A test clip at `path`: `blank` frames of a plain canvas, then Grace Hopper's photo
    (scaled to 80% of the height) drifting a pixel a frame to the right; a 440 Hz tone
    (AAC, 16 kHz mono) beside it. Returns the path."""
    import matplotlib.cbook
    from PIL import Image

    width, height = size
    face = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    face = face.convert("RGB").resize((round(height * 0.8 * 512 / 600), round(height * 0.8)))

    def frame(i: int):
        canvas = Image.new("RGB", size, (40, 90, 120))
        if i >= blank:
            canvas.paste(face, (width // 10 + i, -height // 12))
        return canvas

    count = round(seconds * rate)
    return write_clip(path, (frame(i) for i in range(count)), rate, seconds, audio, crf)


def write_clip(path, frames, rate: int, seconds: float, audio: bool = True, crf: str = "12"):
    """`frames` (PIL RGB images of one size) as H.264 yuv420p at `rate` frames/s, with
    `seconds` of a 440 Hz tone (AAC, 16 kHz mono) beside them when `audio`. Returns the
    path."""
    import av

    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w") as clip:
        video = clip.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = *first.size, "yuv420p"
        video.options = {"crf": crf}
        tone = clip.add_stream("aac", rate=16000) if audio else None
        if tone is not None:
            tone.layout = "mono"
        for image in (first, *frames):
            for packet in video.encode(av.VideoFrame.from_image(image)):
                clip.mux(packet)
        if tone is not None:
            samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(round(16000 * seconds)) / 16000)
            for start in range(0, len(samples), 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start:start + 1024].astype(
                    np.float32), format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                for packet in tone.encode(chunk):
                    clip.mux(packet)
        for stream in (video, tone):
            for packet in stream.encode() if stream is not None else ():
                clip.mux(packet)
    return Path(path)


def frames_of(path) -> list[np.ndarray]:
    """Every frame of a clip, RGB int [H,W,3]."""
    import av

    with av.open(str(path)) as clip:
        return [f.to_ndarray(format="rgb24").astype(int) for f in clip.decode(video=0)]


def flicker(frames: list[np.ndarray], quads: tuple) -> float:
    """Mean |frame t - frame t-1| over frame t's face region, across the clip's frames
    with a face in both."""
    from vrfam_rt.pasteback import face_regions

    changes = []
    for t in range(1, len(frames)):
        if quads[t] and quads[t - 1]:
            region = face_regions(frames[t].shape[:2], quads[t])
            changes.append(np.abs(frames[t] - frames[t - 1])[region].mean())
    return float(np.mean(changes)) if changes else float("nan")


@click.command()
@click.option("--config", default="default", show_default=True,
              help="default: the shipped bundle; else a config name, random weights (seed 0).")
@click.option("--path", "paths", multiple=True, default=("eager:fp32",), show_default=True,
              help="BACKEND:PRECISION to time; repeatable.")
@click.option("--batch", default=4, show_default=True, type=click.IntRange(1))
@click.option("--seconds", default=SECONDS, show_default=True, type=float)
@click.option("--flicker/--no-flicker", "flicker_too", default=True, show_default=True,
              help="Also measure flicker (one more run of the first path, unsmoothed); "
              "meaningless for random weights, whose faces are noise.")
@click.option("--detect-rate", type=float,
              help="Faces looked for this often a second, followed between (edit_video).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--work", default="/tmp/vrfam-video-bench", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
def main(config, paths, batch, seconds, flicker_too, detect_rate, json_path, work):
    from vrfam_rt import Bundle, EditPipeline
    from vrfam_rt.environment import describe
    from vrfam_rt.suite import resolve
    from vrfam_rt.tables import render
    from vrfam_rt.video import edit_video

    load = [os.getloadavg()[0]]          # the machine's 1-minute load, before and after
    work.mkdir(parents=True, exist_ok=True)
    clip = make_clip(work / "clip.mp4", seconds)
    bundle = Bundle.load(resolve(None)) if config == "default" else Bundle.random(config, seed=0)
    edit = {bundle.attributes[0]: 1.0}
    rows, runs = [], {}
    for path in paths:
        backend, precision = path.split(":")
        pipe = EditPipeline.from_bundle(bundle, backend, precision, max_batch=batch)
        edit_video(pipe, clip, work / "warm.mp4", edit, duration=batch / RATE, batch=batch)
        started = time.perf_counter()
        report = edit_video(pipe, clip, work / f"{backend}-{precision}.mp4", edit, batch=batch,
                            detect_rate=detect_rate)
        spent = time.perf_counter() - started
        runs[path] = report
        rows.append({"backend": backend, "precision": precision, "batch": batch,
                     "frames": report.frames, "seconds": round(spent, 2),
                     "frames/s": round(report.frames / spent, 3)})
    print(render(rows, [(c, c, "") for c in ("backend", "precision", "batch", "frames",
                                               "seconds", "frames/s")]))
    first = paths[0]
    backend, precision = first.split(":")
    steadiness, measured = [], []
    if flicker_too:
        pipe = EditPipeline.from_bundle(bundle, backend, precision, max_batch=batch)
        unsmoothed = edit_video(pipe, clip, work / "unsmoothed.mp4", edit, smooth=False,
                                batch=batch, detect_rate=detect_rate)
        measured = [("smoothed", runs[first], work / f"{backend}-{precision}.mp4"),
                    ("unsmoothed", unsmoothed, work / "unsmoothed.mp4")]
    source = frames_of(clip) if measured else []
    for label, report, out in measured:
        edited, original = flicker(frames_of(out), report.quads), flicker(source, report.quads)
        steadiness.append({"alignment": label, "path": first, "flicker out": round(edited, 3),
                           "flicker in": round(original, 3),
                           "ratio": round(edited / original, 3)})
    if steadiness:
        print(render(steadiness, [(c, c, "") for c in ("alignment", "path", "flicker out",
                                                         "flicker in", "ratio")]))
    if json_path:
        json_path.write_text(json.dumps({
            "config": config, "clip": {"seconds": seconds, "rate": RATE, "size": list(SIZE)},
            "edit": edit, "detect_rate": detect_rate, "speed": rows, "flicker": steadiness, "environment": describe(),
            "load_average_1min": load + [os.getloadavg()[0]]},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
