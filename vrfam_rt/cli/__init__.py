"""The `vrfam-rt` command line: one module per command group, registered here.

| module     | commands                                  | stands on                        |
| info.py    | info, import                              | environment, checkpoints         |
| build.py   | export, build-engines, calibrate          | export/, engines/, calibration/  |
| edit.py    | edit                                      | pipeline (EditPipeline)          |
| measure.py | bench, profile, gpu-check                 | runtime, benchmarks/             |
| evaluate.py| eval                                      | runtime, benchmarks/evaluate     |
| serve.py   | serve, loadtest, triton-repo              | serving (Triton)                 |
| ui.py      | ui                                        | serving/ui (Gradio), pipeline    |
| synth.py   | synth render/sheet/train-oracle/...       | training/render, training/oracle |
| train.py   | train classifier/transformer/...          | training/                        |
| common.py  | the shared options, bundle_from, open_runtime, the environment |   |

Heavy libraries are imported inside the commands, so `--help` stays fast. Modules
import only `common` and the library, never each other.
"""
from __future__ import annotations

import sys
import traceback

import click

from vrfam_rt.cli import build, edit, evaluate, info, measure, serve, synth, train, ui
from vrfam_rt.errors import VrfamError, as_flags
from vrfam_rt.version import __version__


def _failed_params(exc: BaseException) -> list:
    """The click parameters of the command `exc` came out of (the innermost context its
    traceback passed through) and of the groups above it."""
    ctx = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if isinstance(frame.f_locals.get("ctx"), click.Context):
            ctx = frame.f_locals["ctx"]
    params = []
    while ctx is not None:
        params += ctx.command.params
        ctx = ctx.parent
    return params


class Group(click.Group):
    """Turns VrfamError into one line on stderr (its arguments spelt as the command's
    options) and the error's exit code, and Ctrl-C into one line saying what was written
    (exit 130)."""

    def invoke(self, ctx):
        from vrfam_rt.cli.common import Progress

        Progress.current = None                # this command's, once it starts one
        try:
            return super().invoke(ctx)
        except VrfamError as exc:
            click.echo(f"error: {as_flags(str(exc), _failed_params(exc))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            done = Progress.current.interrupted() if Progress.current else \
                "every output in place is whole (files are renamed into place once complete)"
            click.echo(f"\ninterrupted: {done}", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vrfam-rt")
def main():
    """Fast facial attribute editing with VR-FAM on StyleGAN2."""


for _module in (info, build, edit, measure, evaluate, serve, synth, train, ui):
    for _command in _module.COMMANDS:
        main.add_command(_command)


def run() -> None:
    """The process entry point (`vrfam-rt`, `python -m vrfam_rt`): process-wide settings,
    then the command line. Callers that invoke `main` inside their own process (tests,
    click's CliRunner) keep their process's settings."""
    from vrfam_rt.environment import keep_freed_memory

    keep_freed_memory()
    main(prog_name="vrfam-rt")
