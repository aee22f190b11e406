"""The one home of the file helpers every floor uses: atomic writes (text, bytes, JSON, whole directories),
JSON reading and sha256 checksums. Nothing half-written is ever left where a reader looks: a temp file or folder
beside the target, renamed over it in one step on success, removed on error.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

# Errors a write/flush/fsync raises without naming the file (disk full, quota, size limit, I/O error).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[str]]:
    """Open a temp file beside ``path`` for writing UTF-8 text; on success it replaces ``path`` in one rename.

    On any error the temp file is removed and ``path`` is left as it was. ``path`` being a folder (or a file
    standing where a folder above it must be) is an OS error naming that path, raised before anything is written;
    a full disk while writing is an OS error naming ``path``.
    """
    path = Path(path)
    directory = path.parent
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where a folder above path must be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), exc.filename) from exc
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:  # e.g. a read-only file system: name the file asked for, not the temp name
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        os.chmod(tmp_name, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno in WRITE_ERRNOS:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # a full disk: name the file
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(handle)`` on a binary temp file beside ``path``, then rename it over ``path`` (removed on error)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside ``target``; on success it replaces ``target``, on error it is removed.

    A reader never sees a half-written folder: either the old directory or the complete new one. A ``target`` (or
    a folder above it) that is a file is refused, never replaced; an OS error names ``target``, not the temp name.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder (it must be a folder)", str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where a folder above target must be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), exc.filename) from exc
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:  # e.g. a read-only file system
        raise OSError(exc.errno, exc.strerror, str(target)) from exc
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno in WRITE_ERRNOS:
            raise OSError(exc.errno, exc.strerror, str(target)) from exc  # a full disk: name the folder
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (UTF-8, keys in insertion order, ``indent`` None = one line)."""
    atomic_write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
