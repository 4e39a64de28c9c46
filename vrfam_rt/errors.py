"""The one exception type users see; the CLI turns it into one line and an exit code.

The library speaks Python. A message that tells the caller to change an argument of the
call names it in backticks as `name=value` (`force=True`, `align=False`,
`method='e4e-linear'`), which a Python caller reads as is; the CLI's error handler
(vrfam_rt.cli) rewrites, through `as_flags`, each such token that names a parameter of
the running command into that option's spelling (`--force`, `--no-align`,
`--method e4e-linear`). A hint that is a whole separate command
(`vrfam-rt export --out DIR`) is written as the shell step it is.
"""
from __future__ import annotations

import ast
import os
import re
import shlex

# `name=value`: an argument of the failing call and the value to give it
ARGUMENT = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)=([^`]*)`")


def _python_name(opt: str) -> str:
    return opt.lstrip("-").replace("-", "_")        # --max-batch -> max_batch


def argument(name: str, value) -> str:
    """The token a message names an argument by: `name=value`, strings and paths as
    Python literals. A flag spelling given for `name` (`--out`) becomes its Python
    name (`out`), so a caller that still passes one reads the same."""
    value = os.fspath(value) if isinstance(value, os.PathLike) else value
    return f"`{_python_name(name)}={value!r}`"


def _spellings(params) -> dict[tuple[str, str | None], str]:
    """{(Python name, value or None for any value): option spelling} of click parameters.

    A parameter answers to its own name and to the names its long options spell; a flag
    answers with the value it sets (`force=True` -> --force; `align=False` -> --no-align,
    whether the parameter is align with --align/--no-align or no_align with --no-align).
    """
    table: dict[tuple[str, str | None], str] = {}
    for param in params:
        if param.param_type_name != "option":                        # click.Option
            continue
        primary = [o for o in param.opts if o.startswith("--")]
        secondary = [o for o in param.secondary_opts if o.startswith("--")]
        if not primary:
            continue
        names = {param.name, *map(_python_name, primary + secondary)}
        if not param.is_flag:
            for name in names:
                table.setdefault((name, None), primary[0])
            continue
        on = param.flag_value if isinstance(param.flag_value, (bool, str, int)) else True
        sets = {primary[0]: on, **{o: False for o in secondary[:1]}}
        for opt, value in sets.items():
            for name in {param.name, _python_name(opt)}:
                table.setdefault((name, repr(value)), opt)
            if isinstance(value, bool) and _python_name(opt).startswith("no_"):
                table.setdefault((_python_name(opt)[3:], repr(not value)), opt)
    return table


def as_flags(message: str, params) -> str:
    """`message` with each `name=value` token that names one of `params` (click's
    parameters of the running command; the CLI's error handler and its per-input error
    lines pass them) in that option's spelling: `force=True` -> `--force`,
    `precision='int8'` -> `--precision int8`, `bundle=PATH` -> `--bundle PATH`. Tokens
    naming no parameter stay as written."""
    table = _spellings(params)

    def spell(match):
        name, value = match.groups()
        if (name, value) in table:
            return f"`{table[name, value]}`"
        if (name, None) not in table:
            return match.group(0)
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            literal = value                              # a placeholder: PATH, N, ...
        given = shlex.quote(literal) if isinstance(literal, str) else value
        return f"`{table[name, None]} {given}`"

    return ARGUMENT.sub(spell, message)


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
