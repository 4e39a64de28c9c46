"""Serving edits on NVIDIA Triton Inference Server.

| module        | what                                                                  |
| edits.py      | one batch of edit requests: decode, check and edit each, answer each  |
| triton_model.py | `vrfam_edit` for Triton's Python backend (runs inside its stub)     |
| server.py     | `vrfam-rt serve`: the model repository and the tritonserver process   |
| ui.py         | `vrfam-rt ui`: the slider page in the browser (Gradio), no Triton     |

Triton comes from PyTriton's wheel (`pip install vrfam-rt[serve]`), which bundles a
real `tritonserver` with its Python backend. `vrfam_edit` is a Python-backend model of
our own rather than a PyTriton-bound callable: PyTriton answers a dynamic batch as a
whole (one failing request fails every request batched with it), where the Python
backend answers each request with its own output or error.
"""

MAX_BYTES = 20 * 2**20       # the largest upload decoded by default (vrfam-rt serve --max-bytes)
