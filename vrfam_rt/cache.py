"""The per-bundle cache: what the runtime reads from it is checked against its manifest.

`<cache root>/<digest>/` holds the folders the runtime makes on demand: `fp32/`,
`fp16/` and `int8-<target>/` ONNX graphs and `engines-<precision>/` plans, each with a
manifest listing its files with their size and sha256 (vrfam_rt.manifests), and
`openvino/`, OpenVINO's compiled models (its own cache, no manifest). `problem` finds
the first thing wrong with a folder: its manifest unreadable or of another bundle, a
file missing, of another size or of another sha256; in `openvino/`, a compiled model
that changed since it was first seen (OpenVINO recompiles a truncated one by itself,
but loads one with damaged weights and computes NaNs). `usable` says such a folder in
one line and moves it out of the way, so that the runtime makes it again.

A file is hashed once: its hash is kept as a stamp (`.stamps.json` beside the manifest:
the file's size, mtime, ctime and inode when it was hashed, and the hash), and a file
whose stat still matches its stamp is not read again (a 1024 px generator takes
seconds to hash). As in git's index, a stat that matches is trusted: a rewrite of the
same size within one clock tick of the hash would pass, and every writer here
replaces a file by renaming a new one onto it, which changes the inode.

Processes (and threads) that open one bundle's cache take turns through `locked`, an
exclusive lock on a `.lock` file in the folder, so that one of them checks, heals and
makes what is missing while the others wait and then find it made.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from vrfam_rt import manifests
from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import LOCK_FILE, STAMPS_FILE, sha256_file, write_json_atomic

STAMPS = STAMPS_FILE


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on `folder/.lock` for the duration of the block (blocks if held).

    Not reentrant: a block inside another on the same folder waits for itself. An
    existing folder this process cannot write (a read-only cache) is used unlocked:
    nothing here can change it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_FILE, "a+")
    except OSError:
        if not folder.is_dir():
            raise
        handle = None
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def listed_files(manifest: dict, kind: str) -> Iterator[tuple[dict[str, str], int]]:
    """({file name: sha256}, their total size in bytes) per component of a manifest:
    an export lists a graph and any external-data files, an engines manifest one plan."""
    for entry in manifest["files"].values():
        if kind == "engines":
            yield {entry["plan"]: entry["sha256"]}, entry["bytes"]
        else:
            yield entry["sha256"], entry["bytes"]


def stat_key(path: Path) -> list[int]:
    """What a stamp compares: size, mtime, ctime (ns) and inode."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


@contextlib.contextmanager
def stamps_of(folder: Path) -> Iterator[dict]:
    """`folder`'s stamps, {file name: {"stat": stat_key, "sha256": hash}}, written back
    (atomically) when the block changed them. An unreadable stamps file counts as none
    (every file is hashed again); one that cannot be written (a read-only cache) stays."""
    try:
        stamps = json.loads((folder / STAMPS).read_text())
    except (OSError, ValueError):
        stamps = {}
    stamps = stamps if isinstance(stamps, dict) else {}
    held = dict(stamps)
    try:
        yield stamps
    finally:
        if stamps != held:
            with contextlib.suppress(OSError):
                write_json_atomic(folder / STAMPS, stamps)


def stamped_sha256(path: Path, stamps: dict) -> str:
    """sha256 of `path`: its stamp's when its stat still matches, else hashed (and the
    stamp updated in `stamps`)."""
    key = stat_key(path)
    stamp = stamps.get(path.name)
    if isinstance(stamp, dict) and stamp.get("stat") == key and "sha256" in stamp:
        return stamp["sha256"]
    digest = sha256_file(path)
    stamps[path.name] = {"stat": key, "sha256": digest}
    return digest


def problem(folder: Path, kind: str, bundle_digest: str) -> str | None:
    """The first thing wrong with the cache folder `folder`, in a few words naming the file
    (`encoder.onnx: size 1234, expected 56789`), or None. `kind`: its manifest's kind
    (vrfam_rt.manifests), or "openvino" for OpenVINO's compiled models."""
    if kind == "openvino":
        with stamps_of(folder) as stamps:
            return compiled_problem(folder, stamps)
    try:
        # a plan folder is there (with its lock) before its first plan is stored
        manifest = manifests.read(folder, kind, missing_ok=kind == "engines")
    except manifests.ManifestError as exc:
        return exc.problem
    if not manifest:
        return None
    name = manifests.FORMATS[kind].file
    if manifest.get("bundle_digest") != bundle_digest:
        return f"{name}: made for another bundle"
    with stamps_of(folder) as stamps:
        try:
            return files_problem(folder, listed_files(manifest, kind), stamps)
        except (KeyError, TypeError, AttributeError):
            return f"{name}: its list of files is malformed"


def files_problem(folder: Path, listed, stamps: dict) -> str | None:
    """The first listed file (listed_files) that is missing, of another size or hash."""
    for hashes, size in listed:
        for name in hashes:
            if not (folder / name).is_file():
                return f"{name}: missing"
        found = sum((folder / name).stat().st_size for name in hashes)
        if found != size:
            return f"{' + '.join(hashes)}: size {found}, expected {size}"
        for name, digest in hashes.items():
            if stamped_sha256(folder / name, stamps) != digest:
                return f"{name}: sha256 differs from the manifest's"
    return None


def compiled_problem(folder: Path, stamps: dict) -> str | None:
    """The first of OpenVINO's compiled models (`*.blob`, no manifest) that changed since
    it was first seen (and stamped). One damaged before it was first seen passes; one
    that another process's OpenVINO was still writing when it was first seen is said
    once (its folder then goes and is compiled anew: a cost, never a wrong result)."""
    for path in sorted(folder.glob("*.blob")):
        stamp = stamps.get(path.name)
        seen = stamp.get("sha256") if isinstance(stamp, dict) else None
        if stamped_sha256(path, stamps) != seen and seen is not None:
            return f"{path.name}: changed since it was compiled"
    return None


def discard(folder: Path) -> None:
    """Move `folder` out of the way (a rename to a unique hidden sibling), then delete it:
    the name is free at once, whatever the deletion does."""
    aside = None
    try:
        aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.damaged.", dir=folder.parent))
        os.replace(folder, aside / folder.name)
    except OSError as exc:
        raise VrfamError(f"{folder} is damaged and cannot be moved away ({exc.strerror}); "
                         "delete it by hand") from None
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def usable(folder: Path, kind: str, bundle_digest: str, what: str,
           say: Callable[[str], None]) -> bool:
    """Whether the cache folder `folder` is there and matches its manifest. A damaged one
    is said in one line (`what` it holds, what is wrong) and discarded, to be made again."""
    if not folder.exists():
        return False
    wrong = problem(folder, kind, bundle_digest)
    if wrong is None:
        return True
    say(f"note: the cached {what} in {folder} are damaged ({wrong}); rebuilding them")
    discard(folder)
    return False


def stamped(folder: Path, kind: str, bundle_digest: str) -> Path:
    """A folder just made, checked (and its files stamped, so that the next open reads
    none of them); one damaged already is a VrfamError."""
    wrong = problem(folder, kind, bundle_digest)
    if wrong is not None:
        raise VrfamError(f"{folder} does not match its manifest right after it was written "
                         f"({wrong}); check the disk and run again")
    return folder
