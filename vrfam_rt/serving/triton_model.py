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
`triton_python_backend_utils` exists; its options come from the model configuration's
`vrfam_rt` parameter (JSON written by `vrfam-rt serve`), never from the environment.
"""
from __future__ import annotations

import json
import traceback

import numpy as np

from vrfam_rt.errors import VrfamError
from vrfam_rt.serving.edits import EditRequest, EditService

PARAMETER = "vrfam_rt"       # the model configuration parameter holding the options
FAILURES = "vrfam_edit_request_failure"


def open_service(options: dict, say=print) -> EditService:
    """The pipeline the options name (as `vrfam-rt serve` resolved them) in a service."""
    from vrfam_rt.bundle import Bundle
    from vrfam_rt.pipeline import EditPipeline
    from vrfam_rt.suite import resolve

    if options.get("config"):
        bundle = Bundle.random(options["config"], seed=options.get("seed", 0))
    else:
        bundle = Bundle.load(resolve(options.get("bundle"), options.get("method")))
    pipeline = EditPipeline.from_bundle(
        bundle, options["backend"], options["precision"], options.get("device", "cpu"),
        options.get("cache_root"), max_batch=options["max_batch"], threads=options.get("threads"),
        align=False, say=say, max_pixels=options["max_pixels"])
    return EditService(pipeline, options["max_bytes"])


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
        options = json.loads(config["parameters"][PARAMETER]["string_value"])
        log = pb_utils.Logger
        self.service = open_service(options, say=lambda line: log.log_info(f"vrfam_edit: {line}"))
        self.failure_family = pb_utils.MetricFamily(
            name=FAILURES, kind=pb_utils.MetricFamily.COUNTER,
            description="vrfam_edit requests answered with an error, by reason (input: a bad "
                        "request, HTTP 400; internal: HTTP 500)")
        self.failures = {reason: self.failure_family.Metric(
            labels={"model": args["model_name"], "reason": reason}) for reason in ("input", "internal")}
        log.log_info(f"vrfam_edit: ready ({options['backend']} {options['precision']}, "
                     f"max batch {options['max_batch']})")

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
