"""The one exception type users see; the CLI turns it into one line and an exit code.

The library speaks Python. A message that tells the caller to change an argument of the
call names it in backticks as `name=value` (`force=True`, `align=False`,
`method='e4e-linear'`), which a Python caller reads as is; the CLI's error handler
(vrfam_rt.cli) rewrites each such token that names a parameter of the running command
into that option's spelling (`--force`, `--no-align`, `--method e4e-linear`). A hint
that is a whole separate command (`vrfam-rt export --out DIR`) is written as the
shell step it is.
"""
from __future__ import annotations

import os
import re

# `name=value`: an argument of the failing call and the value to give it
ARGUMENT = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)=([^`]*)`")


def argument(name: str, value) -> str:
    """The token a message names an argument by: `name=value`, strings and paths as
    Python literals. A flag spelling given for `name` (`--out`) becomes its Python
    name (`out`), so a caller that still passes one reads the same."""
    name = name.lstrip("-").replace("-", "_")
    return f"`{name}={os.fspath(value) if isinstance(value, os.PathLike) else value!r}`"


class VrfamError(Exception):
    """A failure the user can act on. The message names the input and what to do."""

    exit_code = 1


class MissingDependency(VrfamError):
    """An optional package or device is not available here."""

    exit_code = 2


class ShapeError(VrfamError, ValueError):
    """A tensor handed to a network or stage that is not of the shape (or dtype) the ONNX
    contract gives it: the message names the stage, the input, both shapes."""

    exit_code = 2


class UsageError(VrfamError):
    """An argument that cannot be right (an unknown attribute, an alpha out of range, a
    malformed value): exit code 2, as click's own usage errors."""

    exit_code = 2
