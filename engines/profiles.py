"""Dynamic-batch optimization profiles from an export manifest's I/O shapes."""
from __future__ import annotations

from vrfam_rt.errors import VrfamError, argument


def batch_profile(inputs: list[dict], max_batch: int, opt_batch: int | None = None,
                  export_max_batch: int | None = None) -> dict[str, dict[str, list[int]]]:
    """{input name: {"min", "opt", "max"}} with the batch axis 1 / opt / max, others fixed.

    `inputs` are manifest entries ({"name", "shape"}), the batch axis a string.
    """
    opt_batch = max_batch if opt_batch is None else opt_batch
    if not 1 <= opt_batch <= max_batch:
        raise VrfamError(f"{argument('opt_batch', opt_batch)} must lie in 1..{max_batch} "
                         "(the max batch)")
    if export_max_batch is not None and max_batch > export_max_batch:
        raise VrfamError(f"{argument('max_batch', max_batch)} exceeds the ONNX export's max batch "
                         f"{export_max_batch}; re-export with `vrfam-rt export --max-batch "
                         f"{max_batch}`")
    profile = {}
    for spec in inputs:
        shape = spec["shape"]
        if not isinstance(shape[0], str) or any(isinstance(d, str) for d in shape[1:]):
            raise VrfamError(f"input '{spec['name']}' has shape {shape}; only a dynamic batch "
                             "axis 0 is supported")
        rest = [int(d) for d in shape[1:]]
        profile[spec["name"]] = {"min": [1, *rest], "opt": [opt_batch, *rest],
                                 "max": [max_batch, *rest]}
    return profile
