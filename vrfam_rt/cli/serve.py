"""`vrfam-rt serve` and `loadtest`: edits as a service on Triton Inference Server
(vrfam_rt.serving)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import click

from vrfam_rt.cli.common import (OUT_DIR, bundle_from, bundle_options, environment,
                                 json_option, many_option, runtime_options, say,
                                 set_threads, table, write_json)
from vrfam_rt.backends import registry
from vrfam_rt.images import MAX_PIXELS
from vrfam_rt.on_demand import MAX_BATCH, default_cache_root, prepare
from vrfam_rt.serving import MAX_BYTES

PORT = click.IntRange(1, 65535)


@click.command()
@runtime_options()
@bundle_options("serve")
@click.option("--max-batch", default=MAX_BATCH, show_default=True, type=click.IntRange(1, 256),
              help="Most requests Triton batches into one forward pass.")
@click.option("--max-queue-delay-us", default=5000, show_default=True,
              type=click.IntRange(0, 60_000_000),
              help="How long Triton holds a request for others to batch with it.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 serves other machines).")
@click.option("--http-port", default=8000, show_default=True, type=PORT,
              help="Triton's HTTP/REST port (KServe v2 protocol).")
@click.option("--grpc-port", default=8001, show_default=True, type=PORT,
              help="Triton's gRPC port.")
@click.option("--metrics-port", default=8002, show_default=True, type=PORT,
              help="Prometheus metrics (nv_inference_exec_count: batches, "
              "nv_inference_request_success: requests answered, failed ones included; "
              "vrfam_edit_request_failure: requests failed).")
@click.option("--max-pixels", default=MAX_PIXELS, show_default=True, type=click.IntRange(1),
              help="Refuse uploads that decode to more pixels.")
@click.option("--max-bytes", default=MAX_BYTES, show_default=True, type=click.IntRange(1),
              help="Refuse, before decoding, uploads (`image`) of more bytes (default 20 MiB).")
@click.option("--ready-timeout", default=600, show_default=True, type=click.IntRange(1),
              help="Seconds the model may take to load.")
def serve(backend, precision, device, threads, bundle_path, method, config, seed, max_batch,
          max_queue_delay_us, host, http_port, grpc_port, metrics_port, max_pixels, max_bytes,
          ready_timeout):
    """Serve edits on Triton (model vrfam_edit, dynamic batching) until Ctrl-C or SIGTERM
    (which stop it within a few seconds).

    Each request: `image` (BYTES [1,1], an encoded photo), `edits` (BYTES [1,1], e.g.
    "Smiling=1.0,Eyeglasses=-1"), optional `align` (BOOL [1,1], default true); the
    answer: `png` (BYTES [1,1]), or an error (HTTP 400) naming the input at fault.

    Example: vrfam-rt serve --max-batch 8 --max-queue-delay-us 5000
    """
    from vrfam_rt.serving.server import Ports, check_ports, serve as run, triton_home

    triton_home()                                  # what is missing, before any model work
    ports = Ports(host, http_port, grpc_port, metrics_port)
    check_ports(ports)
    set_threads(threads)
    bundle = bundle_from(bundle_path, config, seed, method)
    # graphs exported (or plans built) into the cache here, where progress shows, and
    # `auto` resolved once: the model instances then open what is already there
    # this process loads no runtime of its own: TensorRT plans would hold GPU memory the
    # model instances need, and OpenVINO loaded here (an int8 backend kept or dropped, or
    # calibration timing its graphs) crashed it on the signal that stops it (OpenVINO
    # 2026.4.1, on an AMX Xeon and on an AVX2 EPYC). A child process makes the folders;
    # this one then finds them made and only reads their manifests.
    registry.resolve(backend, precision, device)       # a usage error here, before the child
    made = subprocess.run([sys.executable, "-c", MAKE, json.dumps(dict(
        bundle_path=bundle_path and str(bundle_path), method=method, config=config, seed=seed,
        backend=backend, precision=precision, device=device, max_batch=max_batch))])
    if made.returncode:
        sys.exit(made.returncode)                            # the child said why
    choice, _ = prepare(bundle, backend, precision, device, max_batch=max_batch)
    options = model_options(bundle, config, seed, choice, threads, max_batch,
                            max_pixels, max_bytes)
    workspace = Path(tempfile.mkdtemp(prefix="vrfam-serve-"))
    run(options, ports, max_batch, max_queue_delay_us, environment(), workspace, say,
        ready_timeout_s=ready_timeout)
    say("stopped")
    # the end, without the interpreter's teardown: the warm-up runtime's (OpenVINO int8:
    # 3-9 s on 2 busy cores) would hold a stop past a deployment's grace period
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


MAKE = "import json, sys; from vrfam_rt.cli.serve import make; make(**json.loads(sys.argv[1]))"


def make(bundle_path, method, config, seed, backend, precision, device, max_batch) -> None:
    """In `serve`'s child process: what its model instances will open, made into the cache
    (exported, calibrated, built), with progress on stderr; a failure is one line and
    its exit code."""
    from vrfam_rt.errors import VrfamError

    try:
        prepare(bundle_from(bundle_path and Path(bundle_path), config, seed, method), backend,
                precision, device, say=say, max_batch=max_batch)
    except VrfamError as exc:
        say(f"error: {exc}")
        sys.exit(exc.exit_code)


def model_options(bundle, config, seed, choice, threads, max_batch, max_pixels,
                  max_bytes):
    """The typed record `vrfam_edit` opens: the model as `bundle_from` resolved it (its
    folder, absolute, or --config and --seed) with its digest, and the runtime `choice`
    (on_demand.prepare's: `auto` decided, its folders made)."""
    from vrfam_rt.serving.triton_model import ServeOptions

    backend, precision = choice.spec.name, choice.precision
    name = config and f"{config} (seed {seed})" or str(bundle.path)
    return ServeOptions(
        bundle=None if config else str(Path(bundle.path).absolute()), config=config,
        seed=seed if config else None, digest=bundle.digest, backend=backend,
        precision=precision, device=choice.device, threads=threads,
        cache_root=str(default_cache_root().absolute()), max_batch=max_batch,
        max_pixels=max_pixels, max_bytes=max_bytes, label=f"{name} on {backend} {precision}")


@click.command()
@click.option("--url", default="127.0.0.1:8000", show_default=True,
              help="HOST:PORT of the server (its HTTP or gRPC port, as --protocol says).")
@click.option("--protocol", default="http", show_default=True, type=click.Choice(["http", "grpc"]),
              help="How to talk to the server (--url names the matching port).")
@many_option("--concurrency", "levels", None, (1, 4, 16), "Requests in flight at once; "
             "one run per value.", convert=int, low=1, high=1024)
@click.option("--requests", default=200, show_default=True, type=click.IntRange(1),
              help="Requests per concurrency level.")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of photos to send in turn (aligned by the server) [default: the "
              "default bundle's example face crop, sent with align=false].")
@click.option("--edits", default="Smiling=1.0", show_default=True,
              help="The edits of every request, as `--attr` values joined by commas.")
@click.option("--wait", "wait_s", default=0, show_default=True, type=click.FloatRange(0),
              help="Seconds to wait for the server's vrfam_edit to be ready (e.g. one just "
              "started with `vrfam-rt serve &`).")
@json_option()
def loadtest(url, protocol, levels, requests, images, edits, wait_s, json_path):
    """Requests/s and p50/p90/p99 latency of a `vrfam-rt serve` server per concurrency,
    with the batches it ran (Triton's statistics).

    Example: vrfam-rt loadtest --url 127.0.0.1:8000 --concurrency 1,4,16 --requests 200 --wait 600
    """
    from vrfam_rt.images import image_files
    from vrfam_rt.serving.loadtest import check_server, loadtest as run
    from vrfam_rt.suite import default_suite

    files = image_files(images) if images else [default_suite() / "faces" / "example.png"]
    payloads = [f.read_bytes() for f in files]
    check_server(url, protocol, wait_s)
    lock = threading.Lock()
    with click.progressbar(length=requests * len(levels), label=f"loadtest {url}",
                           file=sys.stderr) as bar:
        def progress(level, count):
            def tick():
                with lock:
                    bar.update(1)
            return tick
        report = run(url, protocol, list(levels), requests, payloads, edits,
                     align=images is not None, progress=progress)
    click.echo(f"{report['model']} at {url} over {protocol}: {len(payloads)} image(s), "
               f"edits {edits!r}, {requests} requests per level")
    click.echo(table(report["levels"], [
        ("concurrency", "concurrency", "d"), ("requests", "requests", "d"),
        ("errors", "errors", "d"), ("req/s", "requests_per_s", ".1f"),
        ("p50 ms", "p50_ms", ".1f"), ("p90 ms", "p90_ms", ".1f"), ("p99 ms", "p99_ms", ".1f"),
        ("batches", "batches", "d"), ("mean batch", "mean_batch", ".2f")]))
    for row in report["levels"]:
        for message, count in row.get("error_messages", []):
            say(f"concurrency {row['concurrency']}: {count} x {message}")
    write_json(json_path, report)
    if any(row["errors"] for row in report["levels"]):
        sys.exit(1)


@click.command("triton-repo")
@click.option("--engines", type=click.Path(file_okay=False, path_type=Path),
              help="A TensorRT plans folder (build-engines --flavour tensorrt): tensorrt_plan models.")
@click.option("--onnx", type=click.Path(file_okay=False, path_type=Path),
              help="An ONNX export precision folder (e.g. onnx/fp16): onnxruntime_onnx or "
              "openvino models (--runtime).")
@click.option("--out", required=True, type=OUT_DIR,
              help="The model repository folder to write.")
@click.option("--runtime", default="onnxruntime", show_default=True,
              type=click.Choice(["onnxruntime", "openvino"]), help="Triton backend for --onnx.")
@click.option("--max-batch", type=click.IntRange(1),
              help="max_batch_size of every model [default: the models' limit, at most 8].")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1),
              help="Instances of each stage model (per GPU for plans).")
@click.option("--max-queue-delay-us", default=1000, show_default=True,
              type=click.IntRange(0), help="Each stage model's dynamic-batching queue delay.")
@click.option("--force", is_flag=True, help="Replace an existing --out.")
def triton_repo(engines, onnx, out, runtime, max_batch, instances, max_queue_delay_us, force):
    """A model repository for a production Triton: the three stages and the ensemble
    vrfam_pipeline (image, alphas -> edited image).

    Example: vrfam-rt triton-repo --onnx onnx/ffhq/fp32 --out triton-repo
    """
    from vrfam_rt.serving.repository import write_triton_repo

    if (engines is None) == (onnx is None):
        raise click.UsageError("give exactly one of --engines DIR or --onnx DIR")
    configs = write_triton_repo(out, engines, onnx, max_batch, instances, runtime,
                                max_queue_delay_us, force=force)
    rows = [{"model": name, "kind": c.get("platform") or c.get("backend"),
             "max batch": c["max_batch_size"],
             "inputs": ", ".join(f"{t['name']} {t['dims']}" for t in c["input"]),
             "outputs": ", ".join(f"{t['name']} {t['dims']}" for t in c["output"])}
            for name, c in configs.items()]
    click.echo(table(rows, [(k, k, "") for k in ("model", "kind", "max batch", "inputs", "outputs")]))
    click.echo(f"wrote {out}; serve it with: docker run --rm --gpus all -p 8000:8000 -p 8001:8001 "
               f"-p 8002:8002 -v {Path(out).resolve()}:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 "
               "tritonserver --model-repository=/models")


COMMANDS = (serve, loadtest, triton_repo)
