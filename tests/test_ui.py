"""`vrfam-rt ui`: the engine behind the page inverts an upload once and renders only the
edit per slider move; the live app answers gradio_client and a real browser."""
import io
import urllib.request
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image

from vrfam_rt.errors import VrfamError

pytest.importorskip("gradio", reason="the ui extra (pip install -e '.[ui]') is not installed")

PHOTO = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
EXAMPLE = Path(__file__).resolve().parent.parent / "vrfam_rt/assets/default/faces/example.png"


@pytest.fixture(scope="module")
def pipeline():
    from vrfam_rt.pipeline import EditPipeline

    return EditPipeline.from_bundle(None, backend="eager", align=False)


@pytest.fixture
def counted(pipeline, monkeypatch):
    """The default model's pipeline with its encoder stage counted: calls and images."""
    runs = {"calls": 0, "images": 0}
    encoder = pipeline.backend.encoder

    def counting(x):
        runs["calls"] += 1
        runs["images"] += len(x)
        return encoder(x)

    monkeypatch.setattr(pipeline.backend, "encoder", counting)
    return pipeline, runs


def editor_of(pipeline, **options):
    from vrfam_rt.serving.ui import Editor

    record = {"bundle": "default", "bundle_digest": "-", "method": "vrfam",
              "backend": pipeline.backend.name, "precision": pipeline.backend.precision,
              "device": "cpu"}
    return Editor(pipeline, record, "a note", EXAMPLE, **options)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_slider_moves_run_no_encoder_and_change_the_face(counted):
    pipeline, runs = counted
    editor = editor_of(pipeline)
    upload, invert_ms = editor.open(EXAMPLE, aligned=False)
    assert runs == {"calls": 1, "images": 1} and invert_ms > 0
    smiling = editor.edit(upload, {"Smiling": 1.0})
    frowning = editor.edit(upload, {"Smiling": -1.0, "Eyeglasses": 0.0})
    again, cached_ms = editor.open(EXAMPLE, aligned=False)          # the same bytes
    assert runs == {"calls": 1, "images": 1} and cached_ms == 0.0 and again == upload
    assert editor.stats.inversions == 1 and editor.stats.edits == 2
    assert smiling.invert_ms == 0.0 and smiling.edit_ms > 0
    # 8-bit faces 2 alphas apart: far more than rounding apart
    assert np.abs(pixels(smiling.crop) - pixels(frowning.crop)).max() > 16
    assert (smiling.label, frowning.label) == ("Smiling +1.00", "Smiling -1.00")


def test_the_inversion_cache_is_bounded_least_recently_used_out(counted, tmp_path):
    pipeline, runs = counted
    editor = editor_of(pipeline, cache_size=2)
    face = Image.open(EXAMPLE).convert("RGB")
    paths = []
    for k in range(3):                         # three uploads whose bytes differ
        paths.append(tmp_path / f"face{k}.png")
        Image.fromarray(np.roll(np.asarray(face), k, axis=1)).save(paths[-1])
    uploads = [editor.open(p, aligned=False)[0] for p in paths]
    assert editor.stats.cached == 2 and runs["calls"] == 3
    editor.edit(uploads[2], {"Smiling": 0.5})  # kept: no encoder
    assert runs["calls"] == 3
    editor.edit(uploads[0], {"Smiling": 0.5})  # let go: inverted again from its file
    assert runs["calls"] == 4 and editor.stats.cached == 2


def test_uploads_over_the_byte_limit_or_unreadable_are_refused_by_name(pipeline, tmp_path):
    editor = editor_of(pipeline, max_bytes=1000)
    with pytest.raises(VrfamError, match=r"example.png: [\d,]+ bytes, over the upload "
                       "limit of 1,000 bytes"):
        editor.open(EXAMPLE, aligned=False)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(VrfamError, match="notes.png: not a readable image"):
        editor_of(pipeline).open(tmp_path / "notes.png", aligned=False)


def test_edit_texts_parse_as_the_cli_does(pipeline):
    editor = editor_of(pipeline)
    with pytest.raises(VrfamError, match="unknown attribute 'Smilng'; did you mean Smiling"):
        editor.edit_text(EXAMPLE, "Smilng=1")
    with pytest.raises(VrfamError, match="outside"):
        editor.edit_text(EXAMPLE, "Smiling=2")


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_one_picked_face_is_edited_and_the_other_left_as_it_was(tmp_path):
    from vrfam_rt.pipeline import EditPipeline

    photo = Image.open(PHOTO).convert("RGB")
    pair = Image.new("RGB", (photo.width * 2, photo.height))
    pair.paste(photo, (0, 0))
    pair.paste(photo.transpose(Image.FLIP_LEFT_RIGHT), (photo.width, 0))
    pair.save(tmp_path / "pair.png")
    editor = editor_of(EditPipeline.from_bundle(None, backend="eager"))
    upload, _ = editor.open(tmp_path / "pair.png")
    assert upload.faces == 2 and upload.aligned
    both = pixels(editor.edit(upload, {"Smiling": 1.0}).photo)
    first = editor.edit(upload, {"Smiling": 1.0}, face=0)
    original = pixels(pair)
    half = photo.width                      # the two faces' photos are equal: either is first
    halves = [np.s_[:, :half], np.s_[:, half:]]
    changed = [bool((pixels(first.photo)[h] != original[h]).any()) for h in halves]
    assert sorted(changed) == [False, True]                 # one face pasted, one untouched
    assert all((both[h] != original[h]).any() for h in halves)
    saved = editor.save(first, tmp_path)
    assert Image.open(saved).size == pair.size              # the full-resolution photo


def test_a_busy_port_is_one_line_and_exit_1():
    import socket

    from click.testing import CliRunner

    from vrfam_rt.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["ui", "--backend", "eager", "--port", str(port)])
    assert result.exit_code == 1
    assert f"error: cannot listen on 127.0.0.1:{port} (" in result.output
    assert "pick another --port" in result.output and "Traceback" not in result.output


# --- the live app: one `vrfam-rt ui` for the tests below ---------------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`vrfam-rt ui --backend eager` on a free loopback port: (url, process)."""
    from vrfam_rt.benchmarks.ui_latency import free_port, start_ui, stop_ui

    port = free_port()
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    proc = start_ui(["--backend", "eager"], port, log)
    yield f"http://127.0.0.1:{port}/", proc, log
    if proc.poll() is None:
        stop_ui(proc)


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_gradio_client_edits_twice_with_one_inversion(live):
    from gradio_client import Client, handle_file

    url, _, _ = live
    client = Client(url, verbose=False)
    before = client.predict(api_name="/stats")
    smiling = client.predict(handle_file(str(PHOTO)), "Smiling=1.0", api_name="/edit")
    frowning = client.predict(handle_file(str(PHOTO)), "smiling=-1.0,Eyeglasses=0.5",
                              api_name="/edit")
    after = client.predict(api_name="/stats")
    assert after["inversions"] - before["inversions"] == 1      # the encoder ran once
    assert after["edits"] - before["edits"] == 2
    a, b = pixels(Image.open(smiling)), pixels(Image.open(frowning))
    assert a.shape == b.shape == pixels(Image.open(PHOTO).convert("RGB")).shape
    assert np.abs(a - b).max() > 16


def test_a_bad_upload_is_an_error_and_the_app_keeps_serving(live, tmp_path):
    from gradio_client import Client, handle_file

    url, _, _ = live
    client = Client(url, verbose=False)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(Exception, match="notes.png: not a readable image"):
        client.predict(handle_file(str(tmp_path / "notes.png")), "Smiling=1",
                       api_name="/edit")
    with pytest.raises(Exception, match="unknown attribute 'Smilng'"):
        client.predict(handle_file(str(EXAMPLE)), "Smilng=1", api_name="/edit")
    assert client.predict(api_name="/stats")["backend"] == "eager"


@pytest.mark.usefixtures("dlib")          # aligns a photo
def test_browser_uploads_moves_a_slider_and_sees_the_photo_change(live, tmp_path):
    from gradio_client import Client

    from vrfam_rt.benchmarks.ui_latency import Page, chromium

    if chromium() is None:
        pytest.skip("no chromium and chromedriver here (apt-get install chromium "
                    "chromium-driver; .ci/run does)")
    url, _, _ = live
    (tmp_path / "notes.png").write_text("not an image")
    page = Page(url)
    try:
        assert "notes.png: not a readable image" in page.upload_refused(tmp_path / "notes.png")
    finally:
        page.close()
    page = Page(url)                            # a fresh page: the app went on serving
    try:
        page.upload(PHOTO)
        first = page.photo_src()
        assert "last edit" in page.text("status") and "synthetic" in page.text("status")
        page.slide("Smiling", 1.2)
        assert page.photo_src() != first
        assert "Smiling +1.20" in page.text("status")
        moved = page.photo_src()
        page.nudge("Smiling")                   # a key press: one slider step, 0.05
        assert page.photo_src() != moved and "Smiling +1.25" in page.text("status")
        client = Client(url, verbose=False)
        before = client.predict(api_name="/stats")["edits"]
        page.burst("Young", [round(0.1 * k, 2) for k in range(1, 13)])
        rendered = client.predict(api_name="/stats")["edits"] - before
        assert 1 <= rendered < 12               # moves that waited behind a newer one: dropped
        assert "Young +1.20" in page.text("status")             # the newest, shown last
        page.screenshot(tmp_path / "ui.png")
        link = page.download_link()
        requested = page.requests()
        edited = page.photo_src()
        page.click("example")                   # the bundled face crop: no note
        assert page.photo_src() != edited and "synthetic" not in page.text("status")
    finally:
        page.close()
    assert Image.open(tmp_path / "ui.png").size[0] > 0
    with urllib.request.urlopen(link) as answer:           # the full-resolution PNG
        assert Image.open(io.BytesIO(answer.read())).size == Image.open(PHOTO).size
    assert requested and all(u.startswith(("http://127.0.0.1", "blob:", "data:"))
                             for u in requested), requested             # nothing external


def test_sigterm_stops_the_app(live):
    from vrfam_rt.benchmarks.ui_latency import stop_ui

    _, proc, log = live
    stop_ui(proc)
    assert proc.returncode == 0
    assert "vrfam-rt ui: stopped" in log.read_text()
