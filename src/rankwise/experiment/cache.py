"""Content hashes and the per-output stage ledger (``stages.json``) that make re-runs skip unchanged work.

A stage's *key* is a sha256 over everything its output depends on: its own config section, the keys of the
stages it reads, the data (corpus fingerprint, queries, judgements) and the rankwise version. After a stage has
written its output file (atomically), the ledger records ``{key, file, sha256, info}``; a later run reuses the
output only when the key matches *and* the file still has that checksum. A run killed mid-stage leaves the
ledger without that stage, so the restart recomputes it (or resumes its saved chunks, see :class:`Chunks`).
A run's ledger lives in its staging folder; :meth:`Ledger.adopt` takes matching stages from the last good output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rankwise.data.files import atomic_write_text, read_json, sha256_file, write_json
from rankwise.types import Qrels, Query

LEDGER = "stages.json"
CHUNKS = ".partial"  # saved pieces of unfinished stages, see :class:`Chunks`


def content_hash(*parts: Any) -> str:
    """sha256 of the parts as canonical JSON (sorted keys); any JSON-able values."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def queries_digest(queries: Mapping[str, Query]) -> str:
    return content_hash([[q.id, q.text, list(q.history)] for q in queries.values()])


def qrels_digest(qrels: Qrels) -> str:
    return content_hash({qid: dict(sorted(docs.items())) for qid, docs in sorted(qrels.items())})


def model_stamp(name_or_path: str | None) -> str | None:
    """A local model directory/file stands for its files' names, sizes and mtimes (so retraining in place
    invalidates the cache); a hub name stands for itself."""
    if not name_or_path:
        return name_or_path
    path = Path(name_or_path)
    if not path.exists():
        return name_or_path
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    listing = [
        [str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files
    ]
    return f"{path.resolve()}#{content_hash(listing)[:16]}"


class Ledger:
    """``stages.json`` of one output directory: which stage outputs are complete, and for which key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LEDGER
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                loaded = read_json(self.path)
            except (OSError, json.JSONDecodeError):
                loaded = {}  # an unreadable ledger only costs a recomputation
            self.entries = loaded if isinstance(loaded, dict) else {}

    def lookup(self, stage: str, key: str) -> dict[str, Any] | None:
        """The recorded info of ``stage`` if its key matches and its output file is intact, else None."""
        entry = self.entries.get(stage)
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        file = self.directory / str(entry.get("file", ""))
        if not file.is_file() or sha256_file(file) != entry.get("sha256"):
            return None
        info = entry.get("info", {})
        return info if isinstance(info, dict) else None

    def record(self, stage: str, key: str, file: str, info: dict[str, Any]) -> None:
        self.entries[stage] = {"key": key, "file": file, "sha256": sha256_file(self.directory / file), "info": info}
        write_json(self.path, self.entries)

    def forget(self, stage: str) -> None:
        if self.entries.pop(stage, None) is not None:
            write_json(self.path, self.entries)

    def adopt(self, other: Ledger, stage: str, key: str) -> dict[str, Any] | None:
        """Take ``stage`` from ``other`` (the last good output) when its key matches and its file is intact: the
        file is hard-linked (copied where links fail) into this directory and recorded; else None."""
        info = other.lookup(stage, key)
        if info is None:
            return None
        file = str(other.entries[stage]["file"])
        link_or_copy(other.directory / file, self.directory / file)
        self.record(stage, key, file, info)
        return info


def link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` (replacing it) as a hard link, or a copy where links fail. Safe to share:
    every output file is replaced by a rename, never written in place."""
    import os
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


class Chunks:
    """Saved pieces of one long stage (``.partial/<stage>-<key>/00003.json``), so a killed run resumes mid-stage.

    Pieces are keyed by their index in a deterministic split of the work, and a piece of another key is never
    read (each key has its own folder). :meth:`clear` removes the folder once the stage's output is complete.
    """

    def __init__(self, directory: Path, stage: str, key: str) -> None:
        self.root = directory / CHUNKS
        self.folder = self.root / f"{stage}-{key[:16]}"

    def load(self, index: int) -> Any | None:
        path = self.folder / f"{index:05d}.json"
        if not path.is_file():
            return None
        try:
            return read_json(path)
        except (OSError, json.JSONDecodeError):
            return None  # a damaged piece is recomputed

    def save(self, index: int, value: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / f"{index:05d}.json", json.dumps(value, ensure_ascii=False) + "\n")

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()
