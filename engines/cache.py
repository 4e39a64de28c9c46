"""The engine cache: a plan is reused only for the exact key it was built for.

The key covers the ONNX file (sha256), the TensorRT flavour and version, the GPUs the
plan is for (TensorRT: the building GPU's name and compute capability; TensorRT-RTX:
the sorted target compute capabilities, no GPU), the optimization profile and the
builder options. A plan
for another key, or whose bytes no longer match their recorded sha256, is rebuilt
and never loaded. Writes go to a temporary name and are renamed into place, under
an exclusive file lock, so concurrent builds of one folder cannot corrupt it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from vrfam_rt.fileio import sha256_bytes, sha256_file

MANIFEST = "manifest.json"


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


def engine_key(onnx_sha256: str, target: Target, profile: dict, options: dict) -> str:
    ident = {"onnx": onnx_sha256, "target": asdict(target), "profile": profile,
             "options": options}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def locked(folder: Path):
    """Exclusive lock on `folder/.lock` for the duration of the block (blocks if held)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to a temporary sibling, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}          # an unreadable manifest only means nothing is cached


def cached_entry(folder: Path, component: str, key: str) -> dict | None:
    """The manifest entry of a reusable plan for `key`, or None (missing, stale, corrupt)."""
    entry = read_manifest(folder).get("files", {}).get(component)
    if not entry or entry.get("key") != key:
        return None
    plan = folder / entry["plan"]
    if not plan.is_file() or sha256_file(plan) != entry.get("sha256"):
        return None
    return entry


def store(folder: Path, component: str, plan: bytes, entry: dict, header: dict) -> dict:
    """Write the plan and merge its entry into the manifest (caller holds the lock)."""
    name = f"{component}.plan"
    write_atomic(folder / name, plan)
    entry = entry | {"plan": name, "sha256": sha256_bytes(plan), "bytes": len(plan)}
    manifest = read_manifest(folder) | header
    manifest["files"] = manifest.get("files", {}) | {component: entry}
    write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return entry
