"""What the commands share: option sets defined once, the bundle and runtime they open,
and the process environment (read here, at the CLI edge, and nowhere below it)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from vrfam_rt.fileio import write_json_atomic
from vrfam_rt.tables import render

FILE = click.Path(path_type=Path)
OUT_FILE = click.Path(dir_okay=False, path_type=Path)
BACKEND_CHOICES = ("eager", "ort", "trt")
PRECISION_CHOICES = ("fp32", "fp16", "bf16", "int8")
CONFIGS = ("tiny", "ffhq-1024")


def say(message: str) -> None:
    """Progress and notes: one line on stderr, so stdout carries only results."""
    click.echo(message, err=True)


def table(rows: list[dict], columns) -> str:
    """The plain-text table every command prints (vrfam_rt.tables.render)."""
    return render(rows, columns)


def write_json(path: Path | None, obj) -> None:
    """--json FILE: written whole or not at all."""
    if path:
        write_json_atomic(path, obj)


def _stack(*decorators):
    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command
    return apply


def bundle_options(verb: str, configs=CONFIGS, seed_help: str | None = None):
    """--bundle B / --config C / --seed S: what `bundle_from` opens."""
    return _stack(
        click.option("--bundle", "bundle_path", type=FILE,
                     help=f"Bundle directory (or model suite) to {verb} "
                     "[default: the shipped default bundle]."),
        click.option("--config", type=click.Choice(configs),
                     help=f"{verb.capitalize()} a seeded random bundle of this config instead."),
        click.option("--seed", default=0, show_default=True,
                     help=seed_help or "Seed of the --config bundle."))


def runtime_options(backend_help: str | None = None):
    """--backend / --precision / --device / --threads: what `open_runtime` takes."""
    return _stack(
        click.option("--backend", default="eager", show_default=True,
                     type=click.Choice(BACKEND_CHOICES),
                     help=backend_help or "eager: PyTorch; ort: ONNX Runtime (exported once "
                     "into the cache); trt: TensorRT plans (built once into the cache)."),
        click.option("--precision", default="fp32", show_default=True,
                     type=click.Choice(PRECISION_CHOICES)),
        device_options())


def device_options():
    """--device / --threads."""
    return _stack(
        click.option("--device", default="cpu", show_default=True,
                     help="cpu or cuda[:N]."),
        click.option("--threads", type=click.IntRange(1),
                     help="CPU threads for torch and ONNX Runtime [default: all cores]."))


def json_option(help: str = "Also write the results as JSON to this file."):
    return click.option("--json", "json_path", type=OUT_FILE, help=help)


def csv_choice(choices):
    """A --option a,b,c callback: known names only, in order, without repeats."""
    def parse(ctx, param, value):
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise click.BadParameter(f"{bad[0] if bad else value!r} is not one of "
                                     f"{', '.join(choices)}")
        return tuple(dict.fromkeys(items))
    return parse


def bundle_from(bundle_path, config, seed):
    """--bundle B (a bundle, or a model suite's vrfam member), --config C (seeded random),
    or neither: the shipped default bundle."""
    from vrfam_rt.bundle import Bundle
    from vrfam_rt.suite import resolve

    if bundle_path and config:
        raise click.UsageError("give one of --bundle B or --config C, not both")
    if config:
        return Bundle.random(config, seed=seed)
    return Bundle.load(resolve(bundle_path))


def set_threads(threads: int | None) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def cache_root() -> Path | None:
    """The cache root the user chose: $VRFAM_RT_CACHE, else $XDG_CACHE_HOME/vrfam-rt, else
    None (the runtime's default, ~/.cache/vrfam-rt)."""
    if os.environ.get("VRFAM_RT_CACHE"):
        return Path(os.environ["VRFAM_RT_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "vrfam-rt"
    return None


def open_runtime(bundle, backend: str, precision: str, device: str, threads: int | None,
                 cuda_graphs: bool = False):
    """The runtime's backend for a command: the cache root from the environment, progress
    on stderr."""
    from vrfam_rt import runtime

    return runtime.open_runtime(bundle, backend, precision, device, threads, cache_root(),
                                cuda_graphs=cuda_graphs, say=say)


def environment() -> dict[str, str]:
    """The process environment, for what reads it on purpose (torchrun's rank variables)."""
    return dict(os.environ)

