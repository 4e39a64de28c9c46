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

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from vrfam_rt import manifests
from vrfam_rt.cache import locked  # noqa: F401  (the one cache lock; build.py takes it here)
from vrfam_rt.fileio import sha256_bytes, sha256_file, write_bytes_atomic
from vrfam_rt.manifests import Target


def engine_key(onnx_sha256: str, target: Target, profile: dict, options: dict) -> str:
    ident = {"onnx": onnx_sha256, "target": asdict(target), "profile": profile,
             "options": options}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def cached_entry(folder: Path, component: str, key: str) -> dict | None:
    """The manifest entry of a reusable plan for `key`, or None (missing, stale, corrupt)."""
    entry = manifests.read(folder, "engines", missing_ok=True).get("files", {}).get(component)
    if not entry or entry.get("key") != key:
        return None
    plan = folder / entry["plan"]
    if not plan.is_file() or sha256_file(plan) != entry.get("sha256"):
        return None
    return entry


def store(folder: Path, component: str, plan: bytes, entry: dict, header: dict) -> dict:
    """Write the plan and merge its entry into the manifest (caller holds the lock)."""
    name = f"{component}.plan"
    write_bytes_atomic(folder / name, plan, durable=True)
    entry = entry | {"plan": name, "sha256": sha256_bytes(plan), "bytes": len(plan)}
    manifest = manifests.read(folder, "engines", missing_ok=True) | header
    manifest["files"] = manifest.get("files", {}) | {component: entry}
    manifests.write(folder, "engines", manifest)
    return entry
