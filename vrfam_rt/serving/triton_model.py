"""`vrfam_edit` for Triton's Python backend: the model `vrfam-rt serve` writes.

Triton batches requests dynamically and calls `execute` with up to max_batch_size of
them; each request carries `image` (BYTES [n,1]: encoded photos), `edits` (BYTES [n,1]:
"Smiling=1.0,Eyeglasses=-1") and optionally `align` (BOOL [n,1], default true), and
gets `png` (BYTES [n,1]) or an error naming its problem, whatever the other requests
of its batch hold. Triton itself refuses a request of the wrong shape or dtype.

Triton's `nv_inference_request_failure` cannot count these errors: its Python backend
(Triton 2.51, and to this day) reports a whole `execute` call as one success or one
failure, so a request answered with an error counts as a success, and only an exception
out of `execute` counts as failures (every request of the batch, answered HTTP 500 with
the backend's traceback). The model therefore counts its failed requests itself, in
the counter FAILURES on Triton's metrics port, labelled with the reason: `input` (a bad
request: HTTP 400) or `internal` (a bug or out of memory: HTTP 500).

This module is imported by the Python backend's stub process, where
`triton_python_backend_utils` exists; its options are one ServeOptions record, which
`vrfam-rt serve` writes as JSON into the model configuration's `vrfam_rt` parameter and
`initialize` reads back, never the environment.
"""
from __future__ import annotations

import dataclasses
import json
import traceback
from dataclasses import dataclass

import numpy as np

from vrfam_rt.errors import VrfamError
from vrfam_rt.serving.edits import EditRequest, EditService

PARAMETER = "vrfam_rt"       # the model configuration parameter holding the options
FAILURES = "vrfam_edit_request_failure"


@dataclass(frozen=True)
class ServeOptions:
    """What `vrfam-rt serve` resolved, for its model instances to open exactly that:
    the model (as `suite.open_bundle` takes it, with the digest of the bundle the CLI
    opened) and the runtime (`auto` already decided)."""

    bundle: str | None          # the bundle folder, absolute; None with `config`
    config: str | None          # a shipped config: a seeded random bundle
    seed: int | None            # its seed (None with `bundle`)
    digest: str                 # Bundle.digest of what the CLI opened
    backend: str                # eager, ort, openvino, trt (never auto)
    precision: str
    device: str                 # cpu, cuda, cuda:N
    threads: int | None         # CPU threads (None: all cores)
    cache_root: str | None      # the per-bundle caches' root (None: the runtime's default)
    max_batch: int              # rows a stage call takes (Triton's max_batch_size)
    max_pixels: int             # the largest decoded upload
    max_bytes: int              # the largest encoded upload
    label: str                  # the model and runtime in words, for the log

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ServeOptions":
        """The record `to_json` wrote; a VrfamError when it is not one (another
        vrfam-rt version wrote the model configuration)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VrfamError(f"the {PARAMETER} parameter is not JSON ({exc})") from None
        if not isinstance(data, dict) or set(data) != fields:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise VrfamError(f"the {PARAMETER} parameter holds {got}, not the fields "
                             f"{sorted(fields)}; restart it with this version's `vrfam-rt serve`")
        return cls(**data)

    def open_bundle(self):
        """The bundle the CLI resolved, reopened; a VrfamError when the folder changed
        since (its digest differs)."""
        from vrfam_rt.suite import open_bundle

        bundle = open_bundle(self.bundle, config=self.config, seed=self.seed)
        if bundle.digest != self.digest:
            raise VrfamError(f"{self.bundle or self.config} changed after `vrfam-rt serve` "
                             f"resolved it (digest {bundle.digest[:12]}..., not "
                             f"{self.digest[:12]}...); restart the server")
        return bundle


def open_service(options: ServeOptions, say=print) -> EditService:
    """The pipeline the options name (as `vrfam-rt serve` resolved them) in a service."""
    from vrfam_rt.pipeline import EditPipeline

    pipeline = EditPipeline.from_bundle(
        options.open_bundle(), options.backend, options.precision, options.device,
        options.cache_root, max_batch=options.max_batch, threads=options.threads,
        align=False, say=say, max_pixels=options.max_pixels)
    return EditService(pipeline, options.max_bytes)


def request_items(image: np.ndarray, edits: np.ndarray, align: np.ndarray | None) -> list[EditRequest]:
    """A request's tensors (batch first) as one EditRequest per row."""
    rows = image.shape[0]
    aligns = [True] * rows if align is None else [bool(a) for a in align.reshape(rows, -1)[:, 0]]
    texts = edits.reshape(rows, -1)[:, 0]
    items = []
    for picture, text, flag in zip(image.reshape(rows, -1)[:, 0], texts, aligns):
        try:
            text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        except UnicodeDecodeError:
            raise VrfamError("edits: not UTF-8 text") from None
        items.append(EditRequest(bytes(picture), text, flag))
    return items


def answer(results: list, rows: int):
    """A request's answers -> its png tensor [rows,1], or the first error (named by row
    when the request holds several images)."""
    for row, result in enumerate(results):
        if isinstance(result, VrfamError):
            where = f"image {row + 1} of {rows}: " if rows > 1 else ""
            return VrfamError(f"{where}{result}")
    return np.array(results, dtype=np.object_).reshape(rows, 1)


class TritonPythonModel:
    """The Python backend's model interface: initialize, execute, finalize."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        options = ServeOptions.from_json(config["parameters"][PARAMETER]["string_value"])
        log = pb_utils.Logger
        self.service = open_service(options, say=lambda line: log.log_info(f"vrfam_edit: {line}"))
        self.failure_family = pb_utils.MetricFamily(
            name=FAILURES, kind=pb_utils.MetricFamily.COUNTER,
            description="vrfam_edit requests answered with an error, by reason (input: a bad "
                        "request, HTTP 400; internal: HTTP 500)")
        self.failures = {reason: self.failure_family.Metric(
            labels={"model": args["model_name"], "reason": reason}) for reason in ("input", "internal")}
        log.log_info(f"vrfam_edit: ready ({options.backend} {options.precision}, "
                     f"max batch {options.max_batch})")

    def _error(self, message: str, internal: bool = False):
        """An error response, counted in FAILURES."""
        error = self.pb.TritonError
        self.failures["internal" if internal else "input"].increment(1)
        code = error.INTERNAL if internal else error.INVALID_ARG
        return self.pb.InferenceResponse(error=error(message, code))

    def execute(self, requests):
        pb = self.pb
        try:
            answers, owners, batch = [None] * len(requests), [], []
            for k, request in enumerate(requests):
                get = lambda name: pb.get_input_tensor_by_name(request, name)  # noqa: E731
                align = get("align")
                try:
                    items = request_items(get("image").as_numpy(), get("edits").as_numpy(),
                                          None if align is None else align.as_numpy())
                except VrfamError as exc:
                    answers[k] = self._error(str(exc))
                    continue
                owners.append((k, len(batch), len(items)))
                batch += items
            results = self.service(batch)
            for k, start, rows in owners:
                out = answer(results[start:start + rows], rows)
                answers[k] = (self._error(str(out)) if isinstance(out, VrfamError) else
                              pb.InferenceResponse(output_tensors=[pb.Tensor("png", out)]))
            return answers
        except Exception as exc:           # a bug or out of memory: say so, keep serving
            pb.Logger.log_error(f"vrfam_edit: {traceback.format_exc()}")
            return [self._error(f"internal error ({type(exc).__name__}); the server's log has "
                                "the details", internal=True) for _ in requests]

    def finalize(self):
        self.service = None
        self.failures = None            # a family outlives its metrics (the backend says so)
        self.failure_family = None
