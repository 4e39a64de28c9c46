"""The three manifest formats, each read and written in one place.

| kind    | file          | written by                          | format            | version |
| bundle  | bundle.json   | Bundle.save, `vrfam-rt import`      | vrfam-rt-bundle   | 1       |
| export  | manifest.json | `vrfam-rt export`, `calibrate`      | vrfam-rt-onnx     | 1       |
| engines | manifest.json | `vrfam-rt build-engines`            | vrfam-rt-engines  | 2       |

`read` fails one way for every kind: a ManifestError (a VrfamError) naming the file,
what is wrong with it (missing, not JSON, another format or version) and the command
that makes a good one. `write` replaces the file atomically. The engines manifest also records the
`Target` its plans are bound to.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import write_json_atomic


class Format(NamedTuple):
    file: str
    name: str
    version: int
    how: str                     # how to make a good one, for error messages


FORMATS = {
    "bundle": Format("bundle.json", "vrfam-rt-bundle", 1,
                     "create it with `vrfam-rt import` or Bundle.save"),
    "export": Format("manifest.json", "vrfam-rt-onnx", 1,
                     "export one with `vrfam-rt export` (or `vrfam-rt calibrate` for INT8)"),
    "engines": Format("manifest.json", "vrfam-rt-engines", 2,
                      "build plans with `vrfam-rt build-engines`"),
}


class ManifestError(VrfamError):
    """A manifest that cannot be read; `problem` says what is wrong with it in a few words
    and no fix (`manifest.json: not valid JSON (...)`), for callers that remake it."""

    def __init__(self, message: str, problem: str):
        super().__init__(message)
        self.problem = problem


def path_of(folder: str | Path, kind: str) -> Path:
    return Path(folder) / FORMATS[kind].file


def read(folder: str | Path, kind: str, missing_ok: bool = False) -> dict[str, Any]:
    """`folder`'s manifest of `kind`, checked for format and version.

    A missing file is an error unless `missing_ok` (then the result is {}).
    """
    fmt = FORMATS[kind]
    path = path_of(folder, kind)
    if not path.is_file():
        if missing_ok:
            return {}
        if not Path(folder).is_dir():
            raise ManifestError(f"{folder}: no such folder" if not Path(folder).exists() else
                                f"{folder} is a file, not a folder holding {fmt.file}",
                                f"{folder}: missing")
        inside = sorted(d.name for d in Path(folder).glob("*/") if (d / fmt.file).is_file())
        if inside:                  # an export root, say, instead of one precision folder
            raise ManifestError(f"{folder} holds no {fmt.file}; point at one of its folders "
                                f"({', '.join(inside)})", f"{fmt.file}: missing")
        raise ManifestError(f"{folder} holds no {fmt.file}; {fmt.how}", f"{fmt.file}: missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); {fmt.how}",
                            f"{fmt.file}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt.name:
        raise ManifestError(f"{path} is not a {fmt.name} manifest; {fmt.how}",
                            f"{fmt.file}: not a {fmt.name} manifest")
    if manifest.get("format_version") != fmt.version:
        raise ManifestError(f"{path} has format version {manifest.get('format_version')}; "
                            f"this vrfam-rt reads version {fmt.version}; {fmt.how}",
                            f"{fmt.file}: format version {manifest.get('format_version')}, "
                            f"not {fmt.version}")
    return manifest


def write(folder: str | Path, kind: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp the format and version onto `manifest` and write it atomically."""
    fmt = FORMATS[kind]
    manifest = {"format": fmt.name, "format_version": fmt.version} | manifest
    write_json_atomic(path_of(folder, kind), manifest)
    return manifest


@dataclass(frozen=True)
class Target:
    """What a plan is bound to: the TensorRT flavour and version, and the GPUs it runs on."""

    flavour: str                            # "tensorrt" (10/11, local GPU) or "rtx" (TensorRT-RTX)
    version: str                            # of that flavour
    compute_capabilities: tuple[str, ...]   # tensorrt: the building GPU's; rtx: the targets
    gpu: str | None = None                  # tensorrt: the building GPU's name; rtx: None

    def describe(self) -> str:
        name = "TensorRT" if self.flavour == "tensorrt" else "TensorRT-RTX"
        where = f"{self.gpu} (sm {self.compute_capabilities[0]})" if self.gpu else \
            f"sm {', '.join(self.compute_capabilities)}"
        return f"{name} {self.version} for {where}"
