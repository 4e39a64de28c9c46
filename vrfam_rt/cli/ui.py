"""`vrfam-rt ui`: the slider page in the browser (vrfam_rt.serving.ui over EditPipeline)."""
from __future__ import annotations

import os
import signal
import tempfile
import threading
from pathlib import Path

import click

from vrfam_rt.cli.common import bundle_from, bundle_options, runtime_options, say
from vrfam_rt.images import MAX_PIXELS
from vrfam_rt.serving import MAX_BYTES

EXAMPLE = Path(__file__).resolve().parent.parent / "assets" / "default" / "faces" / "example.png"


@click.command()
@bundle_options("edit with")
@runtime_options()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 lets other machines in).")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535),
              help="Port to listen on.")
@click.option("--share", is_flag=True,
              help="Also open a public link through Gradio's share servers (off by default: "
              "the page is served from this machine only, and nothing is fetched).")
@click.option("--max-bytes", default=MAX_BYTES, show_default=True, type=click.IntRange(1),
              help="Refuse uploads larger than this many bytes.")
@click.option("--max-pixels", default=MAX_PIXELS, show_default=True, type=click.IntRange(1),
              help="Refuse photos that decode to more pixels.")
def ui(bundle_path, method, config, seed, backend, precision, device, threads, host, port,
       share, max_bytes, max_pixels):
    """Edit faces in the browser: upload a photo (or take the example face) and move a
    slider per attribute; the photo is inverted once, each move renders the edit only.

    Serves on http://127.0.0.1:7860 until Ctrl-C or SIGTERM. The Gradio API has
    `/edit` (image file, 'Smiling=1.0,Eyeglasses=-0.5') -> the edited photo, for
    gradio_client.

    Example: vrfam-rt ui --backend ort --port 7860
    """
    from vrfam_rt.errors import VrfamError

    # no network at run time: Gradio's analytics and version check stay off
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise VrfamError("vrfam-rt ui needs Gradio: pip install 'vrfam-rt[ui]'") from None
    from vrfam_rt.pipeline import EditPipeline
    from vrfam_rt.serving.ui import Editor, build_app
    from vrfam_rt.suite import method_of, synthetic_note

    bundle = bundle_from(bundle_path, config, seed, method)
    if not bundle.attributes:
        raise VrfamError("this bundle edits nothing: it holds no latent transformer "
                         "(`vrfam-rt info --bundle` says what a bundle can do)")
    pipeline = EditPipeline.from_bundle(bundle, backend, precision, device, threads=threads,
                                        say=say, max_pixels=max_pixels)
    record = {"bundle": str(bundle.path) if bundle.path else f"random {config}, seed {seed}",
              "bundle_digest": bundle.digest, "method": method_of(bundle),
              "backend": pipeline.backend.name, "precision": pipeline.backend.precision,
              "device": str(pipeline.device)}
    editor = Editor(pipeline, record, synthetic_note(bundle),
                    EXAMPLE if EXAMPLE.is_file() else None, max_bytes=max_bytes)
    with tempfile.TemporaryDirectory(prefix="vrfam-rt-ui-") as downloads:
        app = build_app(editor, Path(downloads))
        app.queue(default_concurrency_limit=1)
        try:
            app.launch(server_name=host, server_port=port, share=share,
                       prevent_thread_lock=True, quiet=True, ssr_mode=False,
                       max_file_size=max_bytes, allowed_paths=[downloads],
                       footer_links=["api"])
        except OSError as exc:
            reason = str(exc).split(".")[0]      # Gradio's first sentence, not its advice
            raise VrfamError(f"cannot listen on {host}:{port} ({reason}); pick another "
                             "--port") from None
        click.echo(f"vrfam-rt ui: http://{host}:{port} ({record['backend']} "
                   f"{record['precision']}); Ctrl-C or SIGTERM stops it", err=True)
        _wait_for_stop()
        app.close()
    click.echo("vrfam-rt ui: stopped", err=True)


def _wait_for_stop() -> None:
    """Block until SIGTERM or SIGINT (Ctrl-C) arrives."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


COMMANDS = (ui,)
