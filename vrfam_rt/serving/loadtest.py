"""`vrfam-rt loadtest`: requests/s and latency of a `vrfam_edit` server per concurrency.

Each concurrency level sends its requests from that many threads, each with a client of
its own (a request waits for its answer before its thread sends the next), so the
server sees up to that many requests at once and batches them dynamically. Around each
level the server's own statistics (Triton's per-model batch statistics) say how many
batches it ran and of which sizes.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from typing import Callable

import numpy as np

from vrfam_rt.errors import MissingDependency, VrfamError, argument
from vrfam_rt.serving.server import MODEL, SERVE_HINT

WARMUP_REQUESTS = 4


def client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise MissingDependency(f"loadtest needs tritonclient: {SERVE_HINT}") from None
    return module


def make_inputs(module, image: bytes, edits: str, align: bool):
    tensors = [module.InferInput("image", [1, 1], "BYTES"),
               module.InferInput("edits", [1, 1], "BYTES"),
               module.InferInput("align", [1, 1], "BOOL")]
    tensors[0].set_data_from_numpy(np.array([[image]], dtype=np.object_))
    tensors[1].set_data_from_numpy(np.array([[edits.encode()]], dtype=np.object_))
    tensors[2].set_data_from_numpy(np.array([[align]], dtype=bool))
    return tensors


def check_server(url: str, protocol: str, wait_s: float = 0):
    """A client of the server at `url` once its vrfam_edit is ready (asked every half
    second for up to `wait_s`), or one line saying why there is none to test."""
    module = client_module(protocol)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = module.InferenceServerClient(url)
            if client.is_model_ready(MODEL):
                return client
            reason = f"the server has no ready {MODEL} model"
        except Exception as exc:                     # refused, unreachable, not Triton
            said = (str(exc).splitlines() or [type(exc).__name__])[0]
            reason = f"no Triton server answers there over {protocol} ({said})"
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    waited = f"after {wait_s:g} s (`wait_s={wait_s:g}`)" if wait_s else \
        "(`wait_s=SECONDS` waits for one starting)"
    raise VrfamError(f"{argument('url', url)}: {reason} {waited}; start one with `vrfam-rt serve`")


def batch_counts(client, protocol: str) -> Counter:
    """{batch size: batches executed} of vrfam_edit so far (Triton's statistics)."""
    stats = (client.get_inference_statistics(MODEL, as_json=True) if protocol == "grpc"
             else client.get_inference_statistics(MODEL))
    counts = Counter()
    for model in stats.get("model_stats", []):
        for row in model.get("batch_stats", []):
            counts[int(row["batch_size"])] += int(row["compute_infer"]["count"])
    return counts


def settled_counts(client, protocol: str, before: Counter, answered: int,
                   timeout_s: float = 3.0) -> Counter:
    """The batches run since `before`, once Triton's statistics hold the `answered`
    requests (it records a batch after sending its responses, so a read at once can miss
    the last one), or what they hold after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        ran = batch_counts(client, protocol) - before
        if sum(k * v for k, v in ran.items()) >= answered or time.monotonic() > deadline:
            return ran
        time.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run_level(url: str, protocol: str, concurrency: int, requests: int, images: list[bytes],
              edits: str, align: bool, tick: Callable[[], None]) -> dict:
    """`requests` requests from `concurrency` threads: latencies, errors, throughput."""
    module = client_module(protocol)
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def worker():
        client = module.InferenceServerClient(url)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                result = client.infer(MODEL, make_inputs(module, images[i % len(images)], edits, align))
                if result.as_numpy("png") is None:
                    raise VrfamError("no png in the answer")
                ms = (time.perf_counter() - start) * 1e3
                with lock:
                    latencies.append(ms)
            except Exception as exc:                 # counted; the run goes on
                with lock:
                    errors.append((str(exc).splitlines() or [type(exc).__name__])[0][:200])
            tick()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    row = {"concurrency": concurrency, "requests": requests, "errors": len(errors),
           "wall_s": wall, "requests_per_s": len(latencies) / wall if wall else 0.0}
    if latencies:
        row.update({"p50_ms": statistics.median(latencies), "p90_ms": percentile(latencies, 90),
                    "p99_ms": percentile(latencies, 99), "mean_ms": statistics.fmean(latencies)})
    if errors:                                       # every kind, most frequent first
        row["error_messages"] = sorted(Counter(errors).items(), key=lambda kv: -kv[1])
    return row


def loadtest(url: str, protocol: str, levels: list[int], requests: int, images: list[bytes],
             edits: str, align: bool, progress=None) -> dict:
    """One row per concurrency level, with the batches the server ran for it."""
    client = check_server(url, protocol)
    run_level(url, protocol, 1, WARMUP_REQUESTS, images, edits, align, lambda: None)
    rows = []
    for level in levels:
        before = batch_counts(client, protocol)
        tick = progress(level, requests) if progress else (lambda: None)
        row = run_level(url, protocol, level, requests, images, edits, align, tick)
        ran = settled_counts(client, protocol, before, row["requests"] - row["errors"])
        batches = sum(ran.values())
        row.update({"batches": batches,
                    "mean_batch": sum(k * v for k, v in ran.items()) / batches if batches else 0.0,
                    "batch_sizes": {str(k): ran[k] for k in sorted(ran)}})
        rows.append(row)
    return {"url": url, "protocol": protocol, "model": MODEL, "edits": edits, "align": align,
            "images": len(images), "levels": rows}
