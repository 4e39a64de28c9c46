"""File helpers: hashing, and files and folders that appear whole or not at all.

Every output a user or a later run trusts (JSON reports, manifests, weights, plans,
images) is written through `atomic_file` or `staged_dir`: the data goes to a fresh
temporary sibling (a name unique per call, from mkstemp/mkdtemp) that is renamed onto
the target only once it is complete, so an interrupted run leaves the old file or
folder as it was and never a half-written one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def writable_folder(path: str | os.PathLike, option: str = "out") -> Path:
    """`path` if files can be written into it (made on first write), else VrfamError
    naming `path` as the caller's argument `option`.

    For the checks a command runs before any model work: `path` is a file; the nearest
    existing folder above it is a file; or nothing may be created there (no write
    permission, a read-only file system) - found by creating and removing a file.
    """
    from vrfam_rt.errors import VrfamError, argument

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VrfamError(f"{argument(option, path)} is a file; name a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise VrfamError(f"{argument(option, path)}: {existing} is a file, so no folder can "
                         "be made under it")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise VrfamError(f"{argument(option, path)}: cannot write into {existing} "
                         f"({exc.strerror or exc})") from None
    return path


def writable_file(path: str | os.PathLike, option: str = "path") -> Path:
    """`path` if a file can be written there (its folder made on first write), else
    VrfamError: `path` is a folder, or its folder cannot be made or written into."""
    from vrfam_rt.errors import VrfamError, argument

    path = Path(path)
    if path.is_dir():
        raise VrfamError(f"{argument(option, path)} is a folder; name a file")
    if path.parent.exists() and not path.parent.is_dir():
        raise VrfamError(f"{argument(option, path)}: {path.parent} is a file, so nothing can be "
                         "written under it")
    writable_folder(path.parent, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise VrfamError(f"{argument(option, path)}: the file is read-only")
    return path


def _discard(path: Path) -> None:
    """Remove a temporary file or folder; a failure here must not hide the first error."""
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it is renamed onto `path`.

    On any failure (an interrupt included) the temporary file is removed and an
    existing `path` is untouched. `durable` also fsyncs the data before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)     # mkstemp's 0600 would follow the file into place
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = False) -> None:
    with atomic_file(path, durable) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """JSON with two-space indents and a final newline (non-JSON values as str)."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


OWNER_FILE = ".vrfam-rt.json"   # in every staged folder: which command made it, and what
STAMPS_FILE = ".stamps.json"    # vrfam_rt.cache's record of the hashes it checked
LOCK_FILE = ".lock"             # the file a folder's users lock (vrfam_rt.cache.locked)
BOOKKEEPING = {OWNER_FILE, STAMPS_FILE, LOCK_FILE}    # vrfam-rt's own, in any of its folders


def _entries(folder: Path) -> set[str]:
    """Every file, link and folder under `folder`, as POSIX paths relative to it, but
    vrfam-rt's bookkeeping files."""
    found = set()
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        found.update((base / name).as_posix() for name in dirs + files
                     if name not in BOOKKEEPING)
    return found


def made_by(folder: str | os.PathLike) -> dict | None:
    """The record `staged_dir` left in `folder` ({"kind", "command", "entries"}), or None."""
    try:
        record = json.loads((Path(folder) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiouAEIOU' else 'a'} {noun}"


def check_replaceable(target: str | os.PathLike, kind: str, force: bool,
                      option: str = "out", force_name: str = "force") -> None:
    """Refuse, before any work, to write a `kind` folder at `target` unless nothing is
    there, or `force` is given and what is there is a `kind` folder that vrfam-rt made
    and that holds nothing else. A VrfamError names the first foreign entry; nothing
    is changed. Regular files, links, the working folder, its parents and the home
    folder are never replaced. The messages name `target` as the caller's argument
    `option` and `force` as its argument `force_name`.
    """
    from vrfam_rt.errors import UsageError, VrfamError, argument

    target, given = Path(target), argument(option, target)
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise VrfamError(f"{given} is a file, not a folder vrfam-rt made; "
                         "choose another folder")
    resolved, cwd, home = target.resolve(), Path.cwd().resolve(), Path.home().resolve()
    if resolved in (home, Path(resolved.anchor)) or cwd.is_relative_to(resolved):
        where = ("the home folder" if resolved == home else "the working folder"
                 if resolved == cwd else "a folder above the working folder")
        raise UsageError(f"{given} is {where}; name a new folder for the {kind}")
    record = made_by(target)
    if record is None or record.get("kind") != kind:
        first = sorted(_entries(target))
        what = f"holds {first[0]!r}" if first else "is a folder"
        raise VrfamError(f"{given} already exists and {what}, which is not {_a(kind)} "
                         "made by vrfam-rt; choose another folder (nothing was changed)")
    foreign = sorted(_entries(target) - set(record.get("entries", ())))
    if foreign:
        raise VrfamError(f"{given} holds {foreign[0]!r}, which vrfam-rt did not "
                         "write there; move it out or choose another folder (nothing was "
                         "changed)")
    if not force:
        raise VrfamError(f"{given} already exists ({_a(kind)} made by "
                         f"`{record.get('command', 'vrfam-rt')}`); choose another folder, "
                         f"or pass {argument(force_name, True)} to replace it")


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike, kind: str, command: str,
               force: bool = False, option: str = "out",
               force_name: str = "force") -> Iterator[Path]:
    """Yield an empty sibling directory; on success it replaces `target` in one rename.

    The folder records that it is a `kind` made by `command` and what it holds
    (OWNER_FILE), which is what lets a later `force` replace it and nothing else:
    an existing `target` is replaced only as `check_replaceable(target, kind, force)`
    allows, checked again just before the swap. On any failure (an interrupt
    included) the staging directory is removed and an existing `target` is left as
    it was.
    """
    target = Path(target)
    check_replaceable(target, kind, force, option, force_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would follow the directory into place
    try:
        yield tmp
        (tmp / OWNER_FILE).write_text(json.dumps(
            {"kind": kind, "command": command, "entries": sorted(_entries(tmp))},
            indent=1) + "\n")
        if target.exists() or target.is_symlink():
            check_replaceable(target, kind, force, option, force_name)
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            _discard(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
