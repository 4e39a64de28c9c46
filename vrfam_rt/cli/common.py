"""What the commands share: option sets defined once, the bundle and runtime they open,
and the process environment (read here, at the CLI edge, and nowhere below it)."""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import click

from vrfam_rt.config import config_names
from vrfam_rt.environment import parse_device
from vrfam_rt.fileio import writable_file, writable_folder, write_json_atomic
from vrfam_rt.tables import render

FILE = click.Path(path_type=Path)


class _Checked(click.ParamType):
    """A path or name checked while the command line is read, before any work: a
    mistake is a UsageError (one line, exit 2) that names the option."""

    def __init__(self, name: str, check):
        self.name, self._check = name, check

    def convert(self, value, param, ctx):
        from vrfam_rt.errors import UsageError, VrfamError

        option = param.opts[0] if param is not None else self.name
        try:
            return self._check(value, option)
        except VrfamError as exc:
            raise UsageError(str(exc)) from None


OUT_FILE = _Checked("file", writable_file)    # --json, --plot, --sheet: a file we may write
OUT_DIR = _Checked("folder", writable_folder) # --out: a folder we may write into (or make)
DEVICE = _Checked("device", parse_device)     # cpu, cuda, cuda:N
DEVICE_OR_AUTO = _Checked("device", lambda value, option: parse_device(value, option, auto=True))
CONFIGS = tuple(config_names())        # every command's --config: the shipped configs


def say(message: str) -> None:
    """Progress and notes: one line on stderr, so stdout carries only results."""
    click.echo(message, err=True)


class Progress:
    """What a long command has done: a one-line bar on a terminal (done/total, items/s,
    ETA; nothing when stderr is piped), and the outputs it has finished, which the CLI
    names when Ctrl-C stops it (`interrupted`)."""

    current: "Progress | None" = None

    def __init__(self, total: int, label: str, unit: str, outputs: str = "files"):
        self.total, self.label, self.unit, self.outputs = total, label, unit, outputs
        self.done, self.written, self.started = 0, [], time.monotonic()
        self.shown = sys.stderr.isatty()
        Progress.current = self

    def update(self, n: int = 1, item: str = "") -> None:
        self.done += n
        if not self.shown:
            return
        seconds = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / seconds
        eta = (self.total - self.done) / rate if rate > 0 else 0
        line = (f"{self.label} {self.done}/{self.total} {self.unit}, {rate:.1f}/s, "
                f"ETA {int(eta) // 60}:{int(eta) % 60:02d}" + (f"  {item}" if item else ""))
        click.echo(f"\r\033[K{line}", err=True, nl=self.done >= self.total)

    def wrote(self, path) -> None:
        self.written.append(str(path))

    def interrupted(self) -> str:
        """What was written and what was not, for the line Ctrl-C prints."""
        if self.shown and self.done < self.total:
            click.echo("", err=True)
        wrote = f"wrote {len(self.written)} {self.outputs}" + (
            f" (the last {self.written[-1]})" if self.written else "")
        return (f"{wrote}; {self.done} of {self.total} {self.unit} done, the rest not "
                "started; nothing is left half-written")


def check_outputs(paths: list[Path], overwrite: bool) -> None:
    """Refuse, before any work, to write over an existing file: an image an earlier
    vrfam-rt command wrote (its PNG record says so) is replaced with `overwrite`,
    anything else never."""
    from vrfam_rt.errors import VrfamError
    from vrfam_rt.images import read_provenance

    for path in paths:
        if not path.exists() and not path.is_symlink():
            continue
        ours = path.is_file() and not path.is_symlink() and read_provenance(path) is not None
        if not ours:
            raise VrfamError(f"{path.parent} already holds {path.name}, which vrfam-rt did not "
                             "write; choose another --out (nothing was written)")
        if not overwrite:
            raise VrfamError(f"{path.parent} already holds {path.name} from an earlier run; "
                             "pass --overwrite to replace it, or choose another --out")


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
    """--bundle B / --method M / --config C / --seed S: what `bundle_from` opens (the
    arguments of `suite.open_bundle`, as flags)."""
    from vrfam_rt.suite import METHODS

    return _stack(
        click.option("--bundle", "bundle_path", type=FILE,
                     help=f"Bundle directory (or model suite) to {verb} "
                     "[default: the shipped default suite]."),
        click.option("--method", type=click.Choice(METHODS, case_sensitive=False),
                     help="Which bundle of the suite (its editing method), as `eval` "
                     "picks it.  [default: vrfam]"),
        click.option("--config", type=click.Choice(configs),
                     help=f"{verb.capitalize()} a seeded random bundle of this config instead."),
        click.option("--seed", default=0, show_default=True,
                     help=seed_help or "Seed of the --config bundle."))


def runtime_options(default_backend: str = "auto"):
    """--backend / --precision / --device / --threads: what `open_runtime` takes, its
    choices and help read from the backend registry."""
    from vrfam_rt.backends import registry

    precisions = "; ".join(f"{s.name}: {s.describe_precisions()}"
                           for s in registry.SPECS.values())
    return _stack(
        click.option("--backend", default=default_backend, show_default=True,
                     type=click.Choice(registry.CHOICES), help=registry.describe_help()),
        click.option("--precision", default="fp32", show_default=True,
                     type=click.Choice(registry.PRECISIONS),
                     help=f"{precisions}. INT8 graphs are calibrated into the cache on first "
                     "use (or by `vrfam-rt calibrate`)."),
        device_options())


def device_options():
    """--device / --threads."""
    from vrfam_rt.backends import registry

    return _stack(
        click.option("--device", type=DEVICE, metavar="cpu|cuda[:N]",
                     help="Where the networks run [default: the backend's own: "
                     f"{registry.describe_devices()}]."),
        click.option("--threads", type=click.IntRange(1),
                     help="CPU threads for torch and ONNX Runtime [default: all cores]."))


def weight_option(name: str, default: float, help: str):
    """--lambda-X W: the weight of one loss term (0 leaves it out)."""
    return click.option(name, default=default, show_default=True, type=float, help=help)


def json_option(help: str = "Also write the results as JSON to this file."):
    return click.option("--json", "json_path", type=OUT_FILE, help=help)


def many_option(name: str, dest: str, choices=None, default=(), help: str = "",
                convert=str, low=None, high=None, metavar: str | None = None,
                required: bool = False):
    """A list-valued option spelled the same way by every command: repeatable, and each
    value may be comma-separated (`--precision fp32,fp16` = `--precision fp32 --precision
    fp16`); known values only (in `choices`, or converted and within low..high), kept in
    order, without repeats."""
    def parse(ctx, param, values):
        items = [v.strip() for value in values for v in str(value).split(",") if v.strip()]
        if values and not items:
            raise click.BadParameter("give at least one value")
        out = []
        for item in items:
            if choices is not None and item not in choices:
                raise click.BadParameter(f"{item!r} is not one of {', '.join(choices)}")
            try:
                value = convert(item)
            except ValueError:
                raise click.BadParameter(f"{item!r} is not a {convert.__name__}") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise click.BadParameter(f"{item!r} is not a finite number")
            if (low is not None and value < low) or (high is not None and value > high):
                raise click.BadParameter(f"{item} is not in {low}..{high}")
            out.append(value)
        return tuple(dict.fromkeys(out))

    parse.many_option = True                     # tests/test_cli.py: one spelling everywhere
    metavar = metavar or (",".join(choices) if choices is not None
                          else convert.__name__.upper() + ",...")
    shown = f"  [default: {','.join(map(str, default))}]" if default else ""
    return click.option(name, dest, multiple=True, default=tuple(map(str, default)), type=str,
                        callback=parse, metavar=metavar, required=required,
                        help=(help + " " if help else "") + "Repeatable or comma-separated."
                        + shown)


ONNX_HELP = ("an export: the --out folder of `vrfam-rt export` (fp32/, fp16/, and "
             "int8-cpu/ or int8-trt/ after `vrfam-rt calibrate`), or one of its folders")


def onnx_folders(path: Path) -> dict[str, Path]:
    """--onnx, the same kind of value in every command: an export root or one of its
    precision folders -> {"fp32" | "fp16" | "int8-cpu" | "int8-trt": folder}."""
    from vrfam_rt import manifests
    from vrfam_rt.errors import VrfamError

    def key(folder: Path, strict: bool = False) -> str | None:
        """The folder's name in the mapping; None (unless strict: the manifest's error)
        when it holds no export manifest."""
        try:
            manifest = manifests.read(folder, "export")
        except VrfamError:                            # plans (engines manifests), or none
            if strict:
                raise
            return None
        precision = manifest["precision"]
        return f"int8-{manifest.get('target', 'cpu')}" if precision == "int8" else precision

    path = Path(path)
    if manifests.path_of(path, "export").is_file():
        return {key(path, strict=True): path}
    keys = {d: key(d) for d in sorted(path.iterdir()) if d.is_dir()} if path.is_dir() else {}
    found = {k: d for d, k in keys.items() if k}
    if not found:
        raise VrfamError(f"--onnx {path} is not {ONNX_HELP} (no manifest.json); make one with "
                         "`vrfam-rt export --out " + str(path) + "`")
    return found


def bundle_from(bundle_path, config, seed, method=None):
    """--bundle B (a bundle, or a model suite's --method member, default vrfam),
    --config C with --seed S (seeded random), or neither: the shipped default suite's
    member; as `suite.open_bundle` resolves it for the API and the server alike (--seed
    reaches it only with --config: some commands seed other things with it too)."""
    from vrfam_rt.suite import open_bundle

    return open_bundle(bundle_path, method=method and method.lower(), config=config,
                       seed=seed if config else None)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def open_runtime(bundle, backend: str, precision: str, device: str | None,
                 threads: int | None, cuda_graphs: bool = False):
    """The runtime's backend for a command, with progress on stderr."""
    from vrfam_rt import on_demand

    return on_demand.open_runtime(bundle, backend, precision, device, threads,
                                cuda_graphs=cuda_graphs, say=say)


def environment() -> dict[str, str]:
    """The process environment, for what reads it on purpose (torchrun's rank variables)."""
    return dict(os.environ)

