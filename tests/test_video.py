"""Video: a clip comes back frame for frame, faces edited, background and audio as they were."""
from fractions import Fraction

import matplotlib.cbook
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vrfam_rt.benchmarks.video import frames_of, write_clip
from vrfam_rt.cli import main
from vrfam_rt.video import FaceTracks, OneEuro, probe

av = pytest.importorskip("av")
PHOTO = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
RATE, SECONDS, SIZE, BLANK = 8, 2, (320, 240), 4      # the first BLANK frames show no face
CANVAS = (40, 90, 120)


def frame(i: int) -> Image.Image:
    """Frame i of the test clip: a plain canvas, then Grace Hopper drifting a pixel a
    frame to the right."""
    canvas = Image.new("RGB", SIZE, CANVAS)
    if i >= BLANK:
        face = Image.open(PHOTO).convert("RGB").resize((256, 300))
        canvas.paste(face, (30 + i, -20))
    return canvas


def make_clip(path, audio: bool = True):
    """SECONDS of frames at RATE (H.264) and a 440 Hz tone (AAC, 16 kHz mono)."""
    return write_clip(path, (frame(i) for i in range(RATE * SECONDS)), RATE, SECONDS, audio)


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as clip:
        return [bytes(p) for p in clip.demux(audio=0) if p.size]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="module")
def pipe():
    pytest.importorskip("dlib")
    from vrfam_rt import Bundle, EditPipeline

    return EditPipeline.from_bundle(Bundle.random("tiny", seed=0), backend="eager")


def test_the_one_euro_filter_holds_a_jittering_still_face_still():
    """A still square with 2 px of detection noise at 25 frames/s: at the 1 Hz cutoff
    the filter is an exponential average with weight a = 1 / (1 + 25 / 2pi) ~ 0.2, which
    leaves sqrt(a / (2 - a)) ~ 1/3 of the noise (the speed term adds little at rest)."""
    rng = np.random.default_rng(0)
    square = np.array([[100, 100], [100, 300], [300, 300], [300, 100]], dtype=float)
    noisy = [square + rng.normal(0, 2, (4, 2)) for _ in range(400)]
    smooth = OneEuro(25.0)
    out = np.array([smooth(q) for q in noisy])[50:]       # past the start
    assert (out - square).std() < 0.5 * 2
    moved = [square + [k * 4.0, 0] for k in range(100)]     # 100 px/s to the right: follows
    follower = OneEuro(25.0)
    last = [follower(q) for q in moved][-1]
    assert abs(last[0, 0] - moved[-1][0, 0]) < 4 * 4      # within four frames' travel


def test_a_scene_cut_restarts_the_tracks():
    tracks = FaceTracks(8.0)
    square = np.array([[100, 20], [100, 220], [300, 220], [300, 20]], dtype=float)
    assert not tracks.cut(frame(BLANK))                     # the first frame
    tracks([square])
    assert not tracks.cut(frame(BLANK + 1)) and len(tracks.tracks) == 1   # a pixel's drift
    assert tracks.cut(frame(0))                             # the face is gone: a cut
    assert tracks.tracks == []
    assert tracks.cut(frame(BLANK))
    moved = tracks([square + 10])
    assert np.allclose(moved[0], square + 10)               # a new track starts where found


@pytest.mark.usefixtures("dlib")          # aligns frames
def test_a_two_second_clip_comes_back_frame_for_frame_with_its_audio(clip, tmp_path):
    result = CliRunner().invoke(main, ["edit", str(clip), "--config", "tiny", "--attr",
                                       "Smiling", "--backend", "eager", "--out",
                                       str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "clip_Smiling+1.0.mp4"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]      # no temporary left
    assert probe(out) == (RATE * SECONDS, Fraction(RATE), SIZE)
    assert f"{RATE * SECONDS - BLANK} with a face" in result.stderr
    with av.open(str(out)) as edited:
        assert edited.streams.video[0].codec_context.name == "h264"
        assert edited.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert audio_packets(out) == audio_packets(clip)               # copied, not re-encoded
    before, after = frames_of(clip), frames_of(out)
    # frames without a face pass through: H.264 at crf 18 twice, a level or two
    assert max(np.abs(a - b).mean() for a, b in zip(before[:BLANK], after[:BLANK])) < 2
    # the face changes; the canvas beside it keeps still (H.264's noise only)
    face = (slice(40, 200), slice(70 + BLANK, 250))
    background = (slice(0, 240), slice(300, 320))
    for a, b in zip(before[BLANK:], after[BLANK:]):
        assert np.abs(a[face] - b[face]).mean() > 5
        assert np.abs(a[background] - b[background]).mean() < 2


@pytest.mark.usefixtures("dlib")          # aligns frames
def test_start_and_duration_edit_a_part_and_ctrl_c_leaves_no_file(clip, tmp_path, pipe,
                                                                 monkeypatch):
    from vrfam_rt.video import edit_video

    part = edit_video(pipe, clip, tmp_path / "part.mp4", {"Smiling": 1.0}, start=1.0,
                      duration=0.5, batch=2)
    assert part.frames == RATE // 2 and part.edited == RATE // 2 and part.audio
    assert probe(tmp_path / "part.mp4")[0] == RATE // 2
    assert len(part.quads) == RATE // 2 and all(len(q) == 1 for q in part.quads)
    seconds = sum(p.duration * p.time_base for p in av.open(str(tmp_path / "part.mp4"))
                  .demux(audio=0) if p.duration)
    assert abs(float(seconds) - 0.5) < 0.15                      # the audio of that part
    followed = edit_video(pipe, clip, tmp_path / "followed.mp4", {"Smiling": 1.0}, start=1.0,
                          duration=0.5, batch=2, detect_rate=2)   # one detection, 3 follows
    assert followed.frames == followed.edited == RATE // 2
    for a, b in zip(followed.quads, part.quads):                 # the same face, followed
        assert np.abs(np.array(a[0]) - np.array(b[0])).max() < 0.1 * np.hypot(*(b[0][3] - b[0][0]))
    (tmp_path / "followed.mp4").unlink()

    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return edit(*args, **kwargs)

    edit = pipe.edit
    monkeypatch.setattr(pipe, "edit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        edit_video(pipe, clip, tmp_path / "stopped.mp4", {"Smiling": 1.0}, batch=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.mp4"]   # nothing half-made


@pytest.mark.usefixtures("dlib")          # aligns frames and a photo
def test_photos_and_a_clip_in_one_command_and_what_is_for_photos_only(clip, tmp_path):
    def run(*args):
        return CliRunner().invoke(main, ["edit", *map(str, args), "--config", "tiny",
                                         "--attr", "Smiling", "--backend", "eager"])

    both = run(PHOTO, clip, "--start", 1, "--duration", 0.5, "--out", tmp_path / "both")
    assert both.exit_code == 0, both.output
    assert "wrote 1 image and 1 video" in both.stdout
    assert probe(tmp_path / "both" / "clip_Smiling+1.0.mp4")[0] == RATE // 2
    assert Image.open(tmp_path / "both" / "grace_hopper_Smiling+1.0.jpg").size == \
        Image.open(PHOTO).size
    for args, says in (((clip, "--crop"), "is a video"), ((PHOTO, "--start", 1), "--start")):
        refused = run(*args, "--out", tmp_path / "refused")
        assert refused.exit_code == 2 and says in refused.output
        assert "Traceback" not in refused.output and not (tmp_path / "refused").exists()


@pytest.mark.usefixtures("dlib")          # the pipeline aligns
def test_an_unreadable_clip_or_a_start_past_the_end_is_one_line_and_leaves_nothing(clip,
                                                                                  tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    for args, says in (((tmp_path / "notes.mp4",), "notes.mp4: not a readable video"),
                       ((clip, "--start", 5), "clip.mp4: no frames between 5 s and the end")):
        result = CliRunner().invoke(main, ["edit", *map(str, args), "--config", "tiny",
                                           "--attr", "Smiling", "--backend", "eager",
                                           "--out", str(tmp_path / "out")])
        assert result.exit_code == 1 and "Traceback" not in result.output
        [line] = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        assert says in line
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
