"""`vrfam-rt ui`: edit a photo in the browser, one slider per attribute (Gradio).

An upload is inverted once (decode, align, encoder) and its Inversion kept in a small
LRU cache keyed by the upload's bytes; a slider move edits that Inversion, so it runs
the transformer, the generator and the paste-back only (`EditPipeline.edit`). The
engine side (`Editor`) knows nothing of Gradio; `build_app` lays the page out over it.

Page: upload or the bundled example face | which face (several found) | a slider per
attribute in [-ALPHA_LIMIT, ALPHA_LIMIT] | the edited photo beside the edited crop |
backend, precision, the last edit's milliseconds | the full-resolution PNG to download.
API (gradio_client): `/edit` (image file, 'Smiling=1.0,Eyeglasses=-0.5') -> the edited
photo; `/stats` -> what the engine has done (inversions, edits, last milliseconds).
"""
from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from vrfam_rt.config import ALPHA_LIMIT
from vrfam_rt.errors import VrfamError
from vrfam_rt.serving import MAX_BYTES

CACHE_SIZE = 8          # inversions kept (the uploads last edited), least recently used out
DISPLAY_SIDE = 1024     # the page shows the photo at most this many pixels a side
CROP_SIDE = 256         # ... and the crop at least this many (pixels repeated)
STEP = 0.05             # slider resolution
ALL_FACES = "all faces"


@dataclass(frozen=True)
class Upload:
    """A photo the page works on: where its bytes are, and the key of its inversion."""

    path: str               # the file (Gradio's upload cache, or the bundled example)
    key: str                # sha256 of its bytes and how it is cropped
    aligned: bool           # a photo whose faces are found (False: a face crop as it is)
    faces: int              # how many faces its inversion holds


@dataclass
class Rendered:
    """One edit of an upload, as the page shows it."""

    photo: object           # PIL RGB: the photo with the edited face(s) pasted back
    crop: object            # PIL RGB: the edited face, the generator's R x R
    edit_ms: float          # EditPipeline.edit: transformer + generator + paste-back
    invert_ms: float = 0.0  # the inversion this edit waited for (0: it was cached)
    label: str = "reconstruction"


@dataclass
class Stats:
    """What the engine has done since it started (the `/stats` endpoint)."""

    inversions: int = 0     # EditPipeline.invert calls: the encoder's runs
    edits: int = 0          # EditPipeline.edit calls
    last_edit_ms: float | None = None
    cached: int = 0         # inversions in the LRU now


def shown_photo(result, face: int = 0):
    """The picture the page calls 'your photo': the input photo with the edited faces
    pasted back (EditResult.photos); for an input kept without its photo (a face crop,
    the example) its edited crop. The one place that chooses."""
    index = result.inversion.indices[face]
    photos = result.photos[index] if result.photos else None
    return photos[0] if photos else result.crops[face][0]


class Editor:
    """An EditPipeline serving one page: uploads inverted once (LRU of `cache_size`),
    edits rendered one at a time (the pipeline's backend is not shared across threads)."""

    def __init__(self, pipeline, record: dict, note: str | None = None,
                 example: str | Path | None = None, cache_size: int = CACHE_SIZE,
                 max_bytes: int = MAX_BYTES):
        self.pipeline = pipeline
        self.record = record        # bundle, digest, method, backend, precision (PNG record)
        self.note = note            # the synthetic-model note, shown for aligned photos
        self.example = example
        self.cache_size, self.max_bytes = cache_size, max_bytes
        self.stats = Stats()
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.pipeline.attributes

    def open(self, path: str | Path, aligned: bool = True) -> tuple[Upload, float]:
        """A photo file -> (its Upload, milliseconds spent inverting it: 0 when cached).
        A VrfamError naming the problem for a file too large, unreadable, or faceless."""
        data = _read_bounded(Path(path), self.max_bytes)
        key = hashlib.sha256(data).hexdigest() + (":photo" if aligned else ":crop")
        with self._lock:
            inversion, ms = self._inversion(key, data, aligned, str(path))
        return Upload(str(path), key, aligned, len(inversion)), ms

    def edit(self, upload: Upload, alphas: dict[str, float], face: int | None = None,
             force: bool = False) -> Rendered:
        """Render `upload` under {attribute: alpha} (zeros dropped; none: the
        reconstruction), on face `face` alone (its index, largest first) or all."""
        edit = {a: float(v) for a, v in alphas.items() if v}
        with self._lock:
            inversion, invert_ms = self._inversion(upload.key, None, upload.aligned,
                                                   upload.path)
            picked = inversion if face is None else inversion[face:face + 1]
            started = time.perf_counter()
            result = self.pipeline.edit(picked, edit, force=force)
            edit_ms = (time.perf_counter() - started) * 1e3
            self.stats.edits += 1
            self.stats.last_edit_ms = edit_ms
        label = ", ".join(f"{a} {v:+.2f}" for a, v in edit.items()) or "reconstruction"
        return Rendered(shown_photo(result), result.crops[0][0], edit_ms, invert_ms, label)

    def _inversion(self, key: str, data: bytes | None, aligned: bool, path: str):
        """(The cached inversion of `key`, 0 ms), or (a new one of `data` (read from
        `path`, the name messages give it, when None: an upload the LRU let go), the
        milliseconds it took)."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key], 0.0
        started = time.perf_counter()
        if data is None:
            data = _read_bounded(Path(path), self.max_bytes)
        inversion = self.pipeline.invert([data], align=aligned, names=[Path(path).name],
                                         faces="all", photos=aligned)
        self.stats.inversions += 1
        if inversion.failures:
            raise inversion.failures[0].error
        self._cache[key] = inversion
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self.stats.cached = len(self._cache)
        return inversion, (time.perf_counter() - started) * 1e3

    def edit_text(self, path: str | Path, text: str) -> Rendered:
        """The `/edit` endpoint: a photo file and 'Smiling=1.0,Eyeglasses=-0.5' (empty:
        the reconstruction) -> every face edited, pasted back."""
        from vrfam_rt.pipeline import parse_edits

        texts = [t for t in (text or "").split(",") if t.strip()]
        alphas = dict(parse_edits(texts, self.attributes, option="edits",
                                  force_hint=None)[0].alphas) if texts else {}
        upload, invert_ms = self.open(path)
        rendered = self.edit(upload, alphas)
        rendered.invert_ms = invert_ms
        return rendered

    def save(self, rendered: Rendered, folder: Path) -> Path:
        """The full-resolution photo as a PNG (with how it was made) in `folder`, a
        folder of the app's own: a new file each time, never a user's."""
        from vrfam_rt.images import save_png

        path = Path(tempfile.mkstemp(prefix="vrfam-edit-", suffix=".png", dir=folder)[1])
        save_png(rendered.photo, path, self.record | {"image": "edit (vrfam-rt ui)",
                                                      "edit": rendered.label})
        return path


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """A file's bytes, refused (VrfamError) when over `max_bytes`."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise VrfamError(f"{path.name}: {size:,} bytes, over the upload limit of "
                             f"{max_bytes:,} bytes (`vrfam-rt ui --max-bytes N` raises it)")
        return path.read_bytes()
    except OSError as exc:
        raise VrfamError(f"{path.name}: cannot read it ({exc.strerror})") from None


def status_line(editor: Editor, rendered: Rendered | None, aligned: bool) -> str:
    """backend precision, the last edit's milliseconds (and the inversion's, when this
    edit waited for one), and the synthetic-model note for a photo."""
    record = editor.record
    parts = [f"**{record['backend']} {record['precision']}** on {record['device']}"]
    if rendered is not None:
        parts.append(f"last edit **{rendered.edit_ms:.1f} ms** ({rendered.label})")
        if rendered.invert_ms:
            parts.append(f"inverted in {rendered.invert_ms:.0f} ms (once per upload)")
    line = " · ".join(parts)
    if aligned and editor.note:
        line += f"\n\nnote: {editor.note}"
    return line


def display(rendered: Rendered):
    """(photo at most DISPLAY_SIDE a side, crop at least CROP_SIDE) for the page, which
    shows both as JPEGs: a PNG of a 1024-px crop takes ~180 ms to write, a JPEG ~5."""
    from PIL import Image

    photo = rendered.photo
    if max(photo.size) > DISPLAY_SIDE:
        photo = photo.copy()
        photo.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.LANCZOS)
    crop = rendered.crop
    repeat = max(1, CROP_SIDE // crop.width)
    return photo, crop.resize((crop.width * repeat, crop.height * repeat), Image.NEAREST)


def build_app(editor: Editor, downloads: Path):
    """The Gradio Blocks page over `editor`; full-resolution PNGs go into `downloads`."""
    import gradio as gr

    attributes = editor.attributes

    def face_choices(upload: Upload | None):
        count = upload.faces if upload else 1
        choices = [ALL_FACES] + [f"face {k + 1}" + (" (largest)" if k == 0 else "")
                                 for k in range(count)]
        return gr.Dropdown(choices=choices, value=ALL_FACES, visible=count > 1)

    def picked(choice) -> int | None:
        return None if not choice or choice == ALL_FACES else int(choice.split()[1]) - 1

    def render(upload: Upload, choice, alphas):
        try:
            rendered = editor.edit(upload, dict(zip(attributes, alphas)), picked(choice))
        except VrfamError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        photo, crop = display(rendered)
        return photo, crop, status_line(editor, rendered, upload.aligned), rendered

    def opened(path, aligned: bool, alphas):
        if not path:
            return (gr.skip(),) * 7
        try:
            upload, invert_ms = editor.open(path, aligned)
        except VrfamError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        photo, crop, status, rendered = render(upload, ALL_FACES, alphas)
        rendered.invert_ms = invert_ms
        status = status_line(editor, rendered, aligned)
        return upload, face_choices(upload), photo, crop, status, rendered, None

    def on_upload(path, *alphas):
        return opened(path, True, alphas)

    def on_example(*alphas):
        return opened(str(editor.example), False, alphas)

    def on_slide(upload, choice, *alphas):
        if upload is None:
            return (gr.skip(),) * 4
        return render(upload, choice, alphas)

    def on_download(rendered):
        if rendered is None:
            raise gr.Error("upload a photo (or take the example face) first",
                           print_exception=False)
        return str(editor.save(rendered, downloads))

    def api_edit(path, text):
        if not path:
            raise gr.Error("give an image file", print_exception=False)
        try:
            return editor.edit_text(path, text).photo
        except VrfamError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def api_stats():
        stats = editor.stats
        return {"backend": editor.record["backend"], "precision": editor.record["precision"],
                "inversions": stats.inversions, "edits": stats.edits,
                "last_edit_ms": stats.last_edit_ms, "cached": stats.cached}

    engine = {"concurrency_limit": 1, "concurrency_id": "engine"}
    with gr.Blocks(title="vrfam-rt", analytics_enabled=False) as app:
        gr.Markdown(f"## vrfam-rt: edit a face\n{editor.record['bundle']} "
                    f"({editor.record['method']}) · {status_line(editor, None, False)}")
        upload = gr.State(None)
        rendered = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                photo_in = gr.File(label="Photo (PNG, JPEG, WebP)", file_types=["image"],
                                   type="filepath", elem_id="upload")
                example = gr.Button("Take the example face", elem_id="example",
                                    visible=editor.example is not None)
                face = gr.Dropdown([ALL_FACES], value=ALL_FACES, label="Face to edit",
                                   visible=False, elem_id="face")
                sliders = [gr.Slider(-ALPHA_LIMIT, ALPHA_LIMIT, value=0.0, step=STEP,
                                     label=a, elem_id=f"slider-{a}") for a in attributes]
            with gr.Column(scale=2):
                with gr.Row():
                    photo = gr.Image(label="Your photo, edited", type="pil", format="jpeg",
                                     interactive=False, buttons=["download", "fullscreen"],
                                     elem_id="photo")
                    crop = gr.Image(label="The face, edited", type="pil", format="jpeg",
                                    interactive=False, buttons=["download", "fullscreen"],
                                    elem_id="crop")
                status = gr.Markdown(elem_id="status")
                download = gr.Button("Full-resolution PNG", elem_id="download")
                saved = gr.File(label="Download", interactive=False, elem_id="saved")
        opened_outputs = [upload, face, photo, crop, status, rendered, saved]
        photo_in.upload(on_upload, [photo_in, *sliders], opened_outputs, api_visibility="private",
                        **engine)
        example.click(on_example, sliders, opened_outputs, api_visibility="private", **engine)
        gr.on([s.input for s in sliders] + [face.input], on_slide, [upload, face, *sliders],
              [photo, crop, status, rendered], trigger_mode="always_last",
              show_progress="hidden", api_visibility="private", **engine)
        download.click(on_download, rendered, saved, api_visibility="private")
        api_in = gr.File(visible=False, type="filepath")
        api_text = gr.Textbox(visible=False)
        api_out = gr.Image(visible=False, type="pil", format="png")
        stats_out = gr.JSON(visible=False)
        gr.Button(visible=False).click(api_edit, [api_in, api_text], api_out, api_name="edit",
                                       **engine)
        gr.Button(visible=False).click(api_stats, None, stats_out, api_name="stats")
    return app
