"""Finished SPLADE shards on disk, so that an interrupted sparse index resumes from them.

The sparse counterpart of :mod:`rankwise.retrieve.encode` (which keeps dense vectors): each shard's postings
(rows within the shard, term ids, weights) go to ``sparse-NNNNN.npz`` with a JSON record of its checksum, the
digest of its texts and the vocabulary size. A shard is reused only when its file matches the checksum and its
texts are the same; ``encoding.json`` refuses a resume under another model, precision or shard size. Plain arrays
(``allow_pickle=False``), never pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rankwise.data.files import atomic_write_bytes, read_json, sha256_file, write_json
from rankwise.retrieve.encode import check_plan

Postings = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # rows (within the shard), terms, weights, vocabulary size


class SparseShards:
    """The shard files of one sparse encoding under ``directory`` (created), planned by ``plan``."""

    def __init__(self, directory: str | Path, plan: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        check_plan(self.directory, plan)

    def _paths(self, index: int) -> tuple[Path, Path]:
        stem = self.directory / f"sparse-{index:05d}"
        return stem.with_suffix(".npz"), stem.with_suffix(".json")

    def load(self, index: int, digest: str) -> Postings | None:
        """Shard ``index``'s postings if it was finished over the same texts (``digest``) and is intact."""
        data, meta_path = self._paths(index)
        if not data.is_file() or not meta_path.is_file():
            return None
        meta = read_json(meta_path)
        if meta.get("texts_sha256") != digest or meta.get("sha256") != sha256_file(data):
            return None
        with np.load(data, allow_pickle=False) as arrays:
            return arrays["rows"], arrays["terms"], arrays["weights"], int(meta["vocab_size"])

    def save(self, index: int, digest: str, postings: Postings) -> None:
        """Write shard ``index`` (the data first, then the record that marks it finished)."""
        rows, terms, weights, vocab_size = postings
        data, meta_path = self._paths(index)
        atomic_write_bytes(data, lambda handle: np.savez(handle, rows=rows, terms=terms, weights=weights))
        meta = {"texts_sha256": digest, "sha256": sha256_file(data), "vocab_size": vocab_size, "postings": len(rows)}
        write_json(meta_path, meta, indent=1)
