"""Index directories on disk: a ``manifest.json`` with the index kind, its parameters and a sha256 of every
file, written atomically (build in a temp dir, then rename), verified on load.

No pickle anywhere: retrievers store arrays as ``.npy``/FAISS files and everything else as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rankwise.errors import IndexStoreError
from rankwise.types import Document

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside ``target``; on success it replaces ``target``, on error it is removed.

    A reader never sees a half-written index: either the old directory or the complete new one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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


def read_manifest(directory: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read and (by default) verify an index directory's manifest; raise IndexStoreError on any problem."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise IndexStoreError(f"{directory}: not a rankwise index (no {MANIFEST}); build one with `rankwise index`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexStoreError(f"{path}: corrupted manifest ({exc})") from exc
    for key in ("format_version", "kind", "params", "files"):
        if key not in manifest:
            raise IndexStoreError(f"{path}: corrupted manifest (missing field '{key}')")
    if manifest["format_version"] != FORMAT_VERSION:
        raise IndexStoreError(
            f"{path}: index format {manifest['format_version']} is not supported "
            f"(this rankwise reads {FORMAT_VERSION}); rebuild the index"
        )
    if verify:
        for name, expected in manifest["files"].items():
            file = directory / name
            if not file.is_file():
                raise IndexStoreError(f"{directory}: index file '{name}' is missing; rebuild the index")
            if sha256_file(file) != expected:
                raise IndexStoreError(f"{file}: checksum mismatch, the index is corrupted; rebuild it")
    return manifest


def expect_kind(manifest: dict[str, Any], directory: str | Path, kind: str) -> None:
    if manifest["kind"] != kind:
        raise IndexStoreError(f"{directory}: is a '{manifest['kind']}' index, not a '{kind}' index")


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
