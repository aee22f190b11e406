"""Index directories on disk: a ``manifest.json`` with the index kind, its parameters and a sha256 of every
file, written atomically (build in a temp dir, then rename), verified on load: the manifest against a schema
per index kind (unknown keys refused), and the folder against the manifest's file list (every file listed, every
listed file present and unchanged).

No pickle anywhere: retrievers store arrays as ``.npy``/FAISS files and everything else as JSON.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rankwise.errors import IndexStoreError
from rankwise.types import Document

MANIFEST = "manifest.json"
# Errors a write raises without naming the file (disk full, quota, size limit, I/O error).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
FORMAT_VERSION = 1
P = TypeVar("P", bound=BaseModel)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside ``target``; on success it replaces ``target``, on error it is removed.

    A reader never sees a half-written index: either the old directory or the complete new one. A ``target`` (or
    a folder above it) that is a file is refused, never replaced; an OS error names ``target``, not the temp name.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder (an index is a folder)", str(target))
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
            raise OSError(exc.errno, exc.strerror, str(target)) from exc  # a full disk: name the index
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def corpus_fingerprint(corpus: Mapping[str, Document]) -> str:
    """A sha256 over every doc's id, title and text: tells whether an index was built from this corpus."""
    digest = hashlib.sha256()
    for doc in corpus.values():
        for part in (doc.id, doc.title, doc.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\x00")
    return digest.hexdigest()


def write_manifest(directory: Path, kind: str, params: dict[str, Any]) -> None:
    """Record ``kind``, ``params`` and the checksum of every file already in ``directory``."""
    files = {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"format_version": FORMAT_VERSION, "kind": kind, "params": params, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


FileName = Annotated[str, Field(pattern=r"^[^/\\\x00]+$")]  # a plain name inside the index folder
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Manifest(BaseModel):
    """The part of ``manifest.json`` every index kind shares; ``params`` is checked by the kind's own schema."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format_version: int
    kind: str
    params: dict[str, Any]
    files: dict[FileName, Sha256]


def _field_error(path: Path, exc: ValidationError, prefix: str = "", kind: str = "") -> IndexStoreError:
    """One line naming the manifest, the first bad field (dotted, e.g. ``params.faiss.nlist``) and the problem."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    where = f"field '{field}'" if field else "top level"
    if kind:
        where += f" of a '{kind}' index"
    problem = first["msg"][0].lower() + first["msg"][1:]
    if first["type"] not in ("missing", "extra_forbidden"):
        problem += f" (got {json.dumps(first['input'])[:60]})"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return IndexStoreError(f"{path}: corrupted manifest, {where}: {problem}{more}")


def read_envelope(directory: str | Path) -> Manifest:
    """Read ``manifest.json`` and check its shared fields and format version (not the kind's params or files)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise IndexStoreError(f"{directory}: not a rankwise index (no {MANIFEST}); build one with `rankwise index`")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexStoreError(f"{path}: corrupted manifest ({exc})") from exc
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version != FORMAT_VERSION:
        raise IndexStoreError(
            f"{path}: index format {version} is not supported (this rankwise reads {FORMAT_VERSION}); rebuild the index"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise _field_error(path, exc) from None


def read_manifest(directory: str | Path, kind: str, schema: type[P], required: Iterable[str] = ()) -> P:
    """Read an index folder's manifest and return its params, checked against ``schema``; raise IndexStoreError.

    The manifest must be a ``kind`` index whose params fit ``schema`` (a pydantic model that refuses unknown
    keys), and the folder must hold exactly the files the manifest lists, each with its recorded sha256: a file
    present but not listed, listed but missing, or changed is refused, as is a ``required`` file that is absent.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    manifest = read_envelope(directory)
    if manifest.kind != kind:
        raise IndexStoreError(f"{path}: field 'kind' says this is a '{manifest.kind}' index, not a '{kind}' index")
    try:
        params = schema.model_validate(manifest.params)
    except ValidationError as exc:
        raise _field_error(path, exc, prefix="params", kind=kind) from None
    for entry in sorted(directory.iterdir()):
        if entry.name != MANIFEST and entry.name not in manifest.files:
            raise IndexStoreError(
                f"{directory}: '{entry.name}' is in the index folder but not listed in {MANIFEST}; rebuild the index"
            )
    for name in sorted({*manifest.files, *required}):
        file = directory / name
        if not file.is_file():
            raise IndexStoreError(f"{directory}: index file '{name}' is missing; rebuild the index")
        if name not in manifest.files:
            raise IndexStoreError(f"{directory}: '{name}' is not listed in {MANIFEST}; rebuild the index")
        if sha256_file(file) != manifest.files[name]:
            raise IndexStoreError(f"{file}: checksum mismatch, the index is corrupted; rebuild it")
    return params


def check_corpus(index: str | Path, fingerprint: str, corpus: Mapping[str, Document], source: str | Path) -> None:
    """Refuse to pair the index at ``index`` (built from the corpus with ``fingerprint``) with another corpus.

    ``source`` names where ``corpus`` was read from. An empty ``fingerprint`` (a dense index built from a
    directory of encoded shards, which has no corpus to fingerprint) cannot be checked and passes.
    """
    if fingerprint and fingerprint != corpus_fingerprint(corpus):
        raise IndexStoreError(
            f"{index}: this index was built from another corpus than {source}; "
            "use the corpus it was built from, or rebuild the index from this one"
        )


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
