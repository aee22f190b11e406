"""Sharded, resumable corpus encoding: memory bounded by the shard size, safe to ``kill -9`` and run again.

Layout of an encoding directory::

    encoding.json          what is encoded and how (model, shard size, dtype, batch size, prompt, ...)
    shard-00000.npy        float32 or float16 rows, one per document, in input order
    shard-00000.json       its document ids, a sha256 of its texts and a sha256 of the .npy file
    ...
    complete.json          written last: shard count, rows, dimension

A shard's ``.json`` is written (atomically) only after its ``.npy`` is in place, so it marks the shard finished.
A rerun with the same settings skips every finished shard whose texts are unchanged and whose ``.npy`` still
matches its checksum, and encodes the rest. Shards always start at multiples of ``shard_size`` and each is
encoded on its own, in sub-chunks of ``chunk_size`` texts, so a resumed run, and one whose shards ran on another
engine (:mod:`rankwise.engine`: in this process, or one model per Ray actor across a cluster), write the same
rows. The engine only runs shards; this module decides what they are and writes them, as they finish.

Texts arrive as an iterable of ``(doc_id, text)`` and only one shard's texts and rows are held at a time,
which keeps peak memory flat in the corpus size (``benchmarks/encode_memory.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rankwise.data._io import iter_jsonl_streamed
from rankwise.data.files import atomic_write_bytes, sha256_file, write_json
from rankwise.engine import Shard
from rankwise.errors import DataError, IndexStoreError, RankwiseError

if TYPE_CHECKING:
    from rankwise.engine import Engine

PLAN_FILE = "encoding.json"
COMPLETE_FILE = "complete.json"
DTYPES = ("float32", "float16")
FORMAT_VERSION = 1
# What an encoding.json written before a plan key existed stands for.
PLAN_DEFAULTS = {"precision": "fp32"}


@dataclass(frozen=True)
class EncodeResult:
    directory: Path
    shards: int
    rows: int
    dim: int
    dtype: str
    reused_shards: int


def shard_stem(index: int) -> str:
    return f"shard-{index:05d}"


def texts_digest(ids: Sequence[str], texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for doc_id, text in zip(ids, texts, strict=True):
        digest.update(doc_id.encode("utf-8"))
        digest.update(b"\x00")
        digest.update(text.encode("utf-8"))
        digest.update(b"\x01")
    return digest.hexdigest()


def iter_corpus_jsonl(path: str | Path) -> Iterator[tuple[str, str]]:
    """Stream ``(doc_id, title + " " + text)`` from a BEIR ``corpus.jsonl`` one line at a time."""
    path = Path(path)
    for number, record in iter_jsonl_streamed(path):
        if not isinstance(record.get("_id"), str):
            raise DataError(path, "expected an object with a string '_id'", line=number)
        title = record.get("title") or ""
        text = record.get("text") or ""
        if not isinstance(title, str) or not isinstance(text, str):
            raise DataError(path, "fields 'title' and 'text' must be strings", line=number)
        yield record["_id"], f"{title} {text}".strip() if title else text


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexStoreError(f"{path}: unreadable ({exc})") from exc


def check_plan(directory: Path, plan: dict[str, Any]) -> None:
    """Create ``encoding.json`` or make sure the existing one describes the same encoding."""
    path = directory / PLAN_FILE
    if not path.exists():
        write_json(path, plan, indent=1)
        return
    stored = _read_json(path)
    for key, value in plan.items():
        if stored.get(key, PLAN_DEFAULTS.get(key)) != value:
            raise IndexStoreError(
                f"{path}: this directory holds an encoding with {key}={stored.get(key)!r}, not {value!r}; "
                "resume with the same settings or use another directory"
            )


def shard_is_finished(directory: Path, index: int, digest: str | None = None) -> bool:
    """Whether shard ``index`` was finished, its .npy matches its checksum and (if given) its texts' digest."""
    meta_path = directory / f"{shard_stem(index)}.json"
    npy_path = directory / f"{shard_stem(index)}.npy"
    if not meta_path.is_file() or not npy_path.is_file():
        return False
    meta = _read_json(meta_path)
    if digest is not None and meta.get("texts_sha256") != digest:
        return False
    return bool(meta.get("sha256") == sha256_file(npy_path))


class ShardEncoder:
    """One shard's texts -> its rows: ``model.encode`` over fixed sub-chunks of ``chunk_size`` texts, cast to the
    plan's dtype. What every engine's worker runs, so a shard's bytes do not depend on the engine. ``model`` is a
    sentence-transformers model, or a zero-argument callable that loads one (each Ray actor then loads its own)."""

    def __init__(self, model: Any, plan: dict[str, Any]) -> None:
        self.model = model if hasattr(model, "encode") or not callable(model) else model()
        self.plan = plan

    def __call__(self, texts: list[str], report: Callable[[int], None] | None = None) -> np.ndarray:
        options = {
            "batch_size": self.plan["batch_size"],
            "prompt": self.plan["prompt"] or None,
            "normalize_embeddings": self.plan["normalize"],
            "convert_to_numpy": True,
            "show_progress_bar": False,
        }
        chunk = self.plan["chunk_size"]
        parts = []
        for start in range(0, len(texts), chunk):
            parts.append(self.model.encode(texts[start : start + chunk], **options))
            if report is not None:
                report(len(parts[-1]))
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return np.ascontiguousarray(rows, dtype=np.dtype(self.plan["dtype"]))


def _write_shard(directory: Path, index: int, ids: list[str], digest: str, rows: np.ndarray) -> None:
    npy_path = directory / f"{shard_stem(index)}.npy"
    atomic_write_bytes(npy_path, lambda handle: np.save(handle, rows, allow_pickle=False))
    meta = {
        "rows": len(ids),
        "dim": int(rows.shape[1]),
        "dtype": str(rows.dtype),
        "sha256": sha256_file(npy_path),
        "texts_sha256": digest,
        "ids": ids,
    }
    write_json(directory / f"{shard_stem(index)}.json", meta, indent=1)


def _batches(items: Iterable[tuple[str, str]], size: int) -> Iterator[tuple[list[str], list[str]]]:
    ids: list[str] = []
    texts: list[str] = []
    for doc_id, text in items:
        ids.append(doc_id)
        texts.append(text)
        if len(ids) == size:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts


def encode_corpus(
    model: Any,
    items: Iterable[tuple[str, str]],
    directory: str | Path,
    *,
    model_id: str,
    precision: str = "fp32",
    shard_size: int = 10_000,
    batch_size: int = 64,
    chunk_size: int | None = None,
    dtype: str = "float32",
    prompt: str = "",
    normalize: bool = True,
    engine: Engine | None = None,
    total: int | None = None,
    show_progress: bool = True,
) -> EncodeResult:
    """Encode ``items`` (``(doc_id, text)`` pairs, streamed) into shards under ``directory``; resumable.

    ``model`` is a sentence-transformers model (anything with its ``encode``) or a zero-argument callable that
    loads one; ``model_id`` names it in ``encoding.json`` so that a resume with another model is refused, as is one
    in another ``precision`` (how ``model`` runs: fp32, bf16 or int8).
    ``engine`` runs the unfinished shards (:class:`rankwise.engine.LocalEngine` by default, in this process;
    :class:`rankwise.engine.ray_engine.RayEngine` on Ray actors, one model each; give it a picklable loader rather
    than a loaded model to ship a name instead of weights). This function alone decides what a shard is, skips
    the finished ones and writes each result as it arrives, so the files are the same whichever engine ran them.
    ``total`` (the number of items, when known) sizes the progress bar.
    """
    from rankwise.engine import LocalEngine, Progress

    if shard_size < 1 or batch_size < 1:
        raise RankwiseError(f"shard_size and batch_size must be at least 1, not {shard_size} and {batch_size}")
    if dtype not in DTYPES:
        raise RankwiseError(f"dtype must be one of {', '.join(DTYPES)}, not '{dtype}'")
    chunk = min(chunk_size or batch_size * 4, shard_size)
    plan = {
        "format_version": FORMAT_VERSION,
        "model": model_id,
        "precision": precision,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "chunk_size": chunk,
        "dtype": dtype,
        "prompt": prompt,
        "normalize": normalize,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    check_plan(directory, plan)
    (directory / COMPLETE_FILE).unlink(missing_ok=True)

    engine = engine if engine is not None else LocalEngine()
    planned = -(-total // shard_size) if total else None
    progress = Progress(total, planned, "encoding", "doc", enabled=show_progress)
    tally = {"shards": 0, "rows": 0, "reused": 0}

    def unfinished() -> Iterator[Shard]:
        for index, (ids, texts) in enumerate(_batches(items, shard_size)):
            digest = texts_digest(ids, texts)
            tally["shards"], tally["rows"] = index + 1, tally["rows"] + len(ids)
            shard = Shard(index, f"shard {index} (documents {ids[0]}..{ids[-1]})", texts, len(ids), (ids, digest))
            if shard_is_finished(directory, index, digest):
                tally["reused"] += 1
                progress.shard_reused(shard)
                continue
            yield shard

    dim = 0
    try:
        for shard, rows in engine.map(partial(ShardEncoder, model, plan), unfinished(), progress):
            ids, digest = shard.key
            _write_shard(directory, shard.index, ids, digest, rows)
            dim = int(rows.shape[1])
    finally:
        progress.close()
    shards, rows_total = tally["shards"], tally["rows"]
    if shards == 0:
        raise RankwiseError("nothing to encode: the corpus is empty")
    _remove_stale(directory, shards)
    if dim == 0:
        dim = int(_read_json(directory / f"{shard_stem(0)}.json")["dim"])
    info = {"shards": shards, "rows": rows_total, "dim": dim, "dtype": dtype}
    write_json(directory / COMPLETE_FILE, info, indent=1)
    return EncodeResult(directory, shards, rows_total, dim, dtype, tally["reused"])


def _remove_stale(directory: Path, shards: int) -> None:
    """Drop shards past the end (left by an earlier, longer corpus)."""
    index = shards
    while (directory / f"{shard_stem(index)}.json").exists() or (directory / f"{shard_stem(index)}.npy").exists():
        (directory / f"{shard_stem(index)}.json").unlink(missing_ok=True)
        (directory / f"{shard_stem(index)}.npy").unlink(missing_ok=True)
        index += 1


def read_complete(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / COMPLETE_FILE
    if not path.is_file():
        raise IndexStoreError(f"{directory}: encoding is not complete (no {COMPLETE_FILE}); run it again to resume")
    return dict(_read_json(path))


def iter_shards(directory: str | Path, mmap: bool = True) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield ``(doc_ids, rows)`` per shard of a complete encoding, verifying each shard's checksum."""
    directory = Path(directory)
    info = read_complete(directory)
    for index in range(info["shards"]):
        meta = _read_json(directory / f"{shard_stem(index)}.json")
        npy_path = directory / f"{shard_stem(index)}.npy"
        if not npy_path.is_file() or sha256_file(npy_path) != meta["sha256"]:
            raise IndexStoreError(f"{npy_path}: missing or checksum mismatch; run the encoding again to repair it")
        rows = np.load(npy_path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if rows.shape != (meta["rows"], meta["dim"]):
            raise IndexStoreError(f"{npy_path}: shape {rows.shape}, expected {(meta['rows'], meta['dim'])}")
        yield list(meta["ids"]), rows


def load_embeddings(directory: str | Path) -> tuple[list[str], np.ndarray]:
    """All ids and rows of a complete encoding, concatenated in memory (float32)."""
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for shard_ids, rows in iter_shards(directory, mmap=True):
        ids.extend(shard_ids)
        parts.append(np.asarray(rows, dtype=np.float32))
    return ids, np.concatenate(parts)


def build_random_encoder(
    directory: str | Path, tokenizer: str, hidden_size: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """Save a tiny, randomly initialised BERT sentence encoder (mean pooling) to ``directory``.

    A stand-in for tests and benchmarks that need a real encoder's code path but not its quality; ``tokenizer``
    is a tokenizer name or path (e.g. the bundled MiniLM directory). Built from a config: nothing is downloaded.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = Path(directory)
    base = directory / "base"
    tok = AutoTokenizer.from_pretrained(tokenizer)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(base, safe_serialization=True)
    tok.save_pretrained(base)
    transformer = Transformer(str(base), max_seq_length=128)
    model = SentenceTransformer(modules=[transformer, Pooling(hidden_size, "mean")], device="cpu")
    model.save(str(directory), safe_serialization=True)
    return directory
