"""BM25 over bm25s, indexing title + text.

Defaults are bm25s' own (Lucene BM25, k1=1.5, b=0.75) plus English stop words and the Snowball English stemmer
(PyStemmer). On SciFact test they give nDCG@10 0.686; Pyserini's BEIR setting (k1=0.9, b=0.4) gives 0.676 here.

Search runs on bm25s' numpy backend or, where numba is installed, its compiled numba retrieval (``backend``), whose
compile is cached on disk (:func:`enable_numba_cache`). Both give the same run: a query's top k is the first k
documents by (score descending, doc id ascending), including which of several documents tied at the k-th score
are kept (bm25s' two top-k selections pick among those differently).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from rankwise.data.files import atomic_dir, read_json, write_json
from rankwise.errors import IndexStoreError, RankwiseError
from rankwise.retrieve.store import corpus_fingerprint, read_manifest, write_manifest
from rankwise.types import Document, Query, Run

KIND = "bm25"
# what bm25s writes (plus nonoccurrence_array.index.npy for bm25l / bm25+), then rankwise's doc ids
FILES = (
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
    "vocab.index.json",
    "params.index.json",
    "doc_ids.json",
)
NONOCCURRENCE_FILE = "nonoccurrence_array.index.npy"
NONOCCURRENCE_METHODS = ("bm25l", "bm25+")
BACKENDS = ("auto", "numpy", "numba")


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def resolve_backend(backend: str) -> str:
    """``auto`` -> numba where it is installed, else numpy; ``numba`` without numba installed is an error."""
    if backend not in BACKENDS:
        raise RankwiseError(f"BM25 backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        return "numba" if numba_available() else "numpy"
    if backend == "numba" and not numba_available():
        raise RankwiseError(
            "BM25 backend 'numba' needs the numba package: pip install 'rankwise[numba]' (or backend: numpy)"
        )
    return backend


def numba_cache_dir() -> Path:
    """Where the compiled BM25 retrieval is cached: ``$NUMBA_CACHE_DIR`` when set, else
    ``$XDG_CACHE_HOME/rankwise/numba`` (``~/.cache``)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rankwise" / "numba"


def enable_numba_cache() -> Path:
    """Cache bm25s' numba retrieval kernels on disk so only the first process ever compiles them (about a minute
    on a small CPU); bm25s compiles them with ``njit`` and no ``cache=True``. Returns the cache directory."""
    from bm25s.numba import retrieve_utils
    from numba.core import config as numba_config
    from numba.core.caching import NullCache

    directory = numba_cache_dir()
    # numba's cache locator reads its CACHE_DIR when a cache is attached; restored after, for others' kernels
    previous, numba_config.CACHE_DIR = numba_config.CACHE_DIR, str(directory)
    try:
        for kernel in (
            retrieve_utils._retrieve_internal_jitted_serial,
            retrieve_utils._retrieve_internal_jitted_parallel,
        ):
            if isinstance(kernel._cache, NullCache):
                kernel.enable_caching()
    finally:
        numba_config.CACHE_DIR = previous
    return directory


class BM25Params(BaseModel):
    """``params`` of a BM25 index's ``manifest.json``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    k1: float
    b: float
    method: str
    stopwords: str | None
    stemmer: str | None
    documents: int
    corpus_fingerprint: str

    @field_validator("stopwords")
    @classmethod
    def _known_stopwords(cls, value: str | None) -> str | None:
        import bm25s

        try:
            bm25s.tokenize([""], stopwords=value, show_progress=False)
        except ValueError:
            raise ValueError(f"bm25s has no stop word list '{value}'") from None
        return value

    @field_validator("stemmer")
    @classmethod
    def _known_stemmer(cls, value: str | None) -> str | None:
        try:
            import Stemmer
        except ImportError:  # searching then names the package to install
            return value
        if value is not None and value not in Stemmer.algorithms():
            raise ValueError(f"PyStemmer has no stemmer '{value}'")
        return value


class BM25Retriever:
    """``index(corpus)`` then ``search(queries, k) -> Run``; ``save(dir)`` / ``BM25Retriever.load(dir)``."""

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | None = "en",
        stemmer: str | None = "english",
        show_progress: bool = True,
        backend: str = "auto",
    ) -> None:
        self.params: dict[str, Any] = {
            "k1": k1,
            "b": b,
            "method": method,
            "stopwords": stopwords,
            "stemmer": stemmer,
        }
        self.show_progress = show_progress
        self.backend = resolve_backend(backend)
        self.doc_ids: list[str] = []
        self.fingerprint = ""
        self._model: Any = None
        self._id_rank: Any = None  # _id_order(), built on first need

    def _stemmer(self) -> Any:
        if self.params["stemmer"] is None:
            return None
        try:
            import Stemmer
        except ImportError as exc:
            raise RankwiseError("BM25 stemming needs PyStemmer: pip install PyStemmer (or set stemmer: null)") from exc
        return Stemmer.Stemmer(self.params["stemmer"])

    def _tokenize(self, texts: list[str]) -> Any:
        import bm25s

        return bm25s.tokenize(
            texts,
            stopwords=self.params["stopwords"],
            stemmer=self._stemmer(),
            show_progress=self.show_progress,
        )

    def index(self, corpus: Mapping[str, Document]) -> None:
        import bm25s

        if not corpus:
            raise RankwiseError("cannot index an empty corpus")
        self.doc_ids = list(corpus)
        self._id_rank = None
        self.fingerprint = corpus_fingerprint(corpus)
        tokens = self._tokenize([doc.contents for doc in corpus.values()])
        self._model = bm25s.BM25(k1=self.params["k1"], b=self.params["b"], method=self.params["method"])
        self._model.index(tokens, show_progress=self.show_progress)

    def search(self, queries: Mapping[str, Query], k: int = 100) -> Run:
        if self._model is None:
            raise RankwiseError("BM25Retriever.search called before index() or load()")
        if not queries:
            return {}
        k = min(k, len(self.doc_ids))
        tokens = self._tokenize([q.text for q in queries.values()])
        docs, scores = self._retrieve(tokens, min(k + 1, len(self.doc_ids)))
        rank, _, names = self._id_order()
        inverse = {index: word for word, index in tokens.vocab.items()}
        run: Run = {}
        for row, qid in enumerate(queries):
            if docs.shape[1] > k and scores[row, k] == scores[row, k - 1]:
                # the k-th score is shared with a document outside the top k: which of them are kept is decided
                # on the query's full scores, by doc id, never by the backend's top-k selection
                if scores[row, k] == 0 and self.params["method"] == "lucene":
                    indices, values = self._zero_filled(docs[row], scores[row], k)
                else:
                    indices, values = self._tied_top_k([inverse[i] for i in tokens.ids[row]], k)
            else:
                indices, values = docs[row, :k], scores[row, :k]
            if (values[1:] == values[:-1]).any():  # rows come sorted by score; ties are ordered by doc id
                order = np.lexsort((rank[indices], -values))
                indices, values = indices[order], values[order]
            run[qid] = dict(zip(names[indices].tolist(), values.tolist(), strict=True))
        return run

    def _retrieve(self, tokens: Any, k: int) -> tuple[Any, Any]:
        """bm25s' top ``k`` (documents, scores) of every query, each row sorted by score, on ``self.backend``."""
        if self.backend == "numba":
            enable_numba_cache()
        self._model.backend = self.backend  # bm25s reads it at retrieve time; index() and get_scores do not
        # Tokens absent from the vocabulary are dropped by bm25s; an all-unknown query scores 0 everywhere.
        return self._model.retrieve(
            tokens, k=k, show_progress=self.show_progress, n_threads=0, backend_selection=self.backend
        )

    def _tied_top_k(self, words: list[str], k: int) -> tuple[Any, Any]:
        """The first ``k`` documents by (score descending, doc id ascending), from the query's full scores."""
        known = self._model.get_tokens_ids(words)
        full = self._model.get_scores_from_ids(known)
        rank = self._id_order()[0]
        threshold = np.partition(full, len(full) - k)[len(full) - k]
        above = np.flatnonzero(full > threshold)
        tied = np.flatnonzero(full == threshold)
        tied = tied[np.argsort(rank[tied], kind="stable")][: k - len(above)]
        chosen = np.concatenate([above, tied])
        order = np.lexsort((rank[chosen], -full[chosen]))
        return chosen[order], full[chosen[order]]

    def _zero_filled(self, docs: Any, scores: Any, k: int) -> tuple[Any, Any]:
        """The top ``k`` where the k-th score is 0 under Lucene BM25, whose idf is always positive: a document
        scores 0 exactly when it matches no query term, so every match is among the k + 1 retrieved and the rest of
        the top k are the unmatched documents first in doc-id order (no full scoring needed)."""
        matched = docs[scores > 0]
        by_id = self._id_order()[1]
        need = k - len(matched)
        fill = by_id[: need + len(matched)]
        fill = fill[~np.isin(fill, matched)][:need]
        return np.concatenate([matched, fill]), np.concatenate([scores[scores > 0], np.zeros(need, scores.dtype)])

    def _id_order(self) -> tuple[Any, Any, Any]:
        """``(each document's position in doc-id order, the documents in doc-id order, the doc ids)`` as arrays:
        the tie rule's order (numpy orders strings by code point, as Python does)."""
        if self._id_rank is None:
            names = np.array(self.doc_ids, dtype=object)
            by_id = np.argsort(np.array(self.doc_ids), kind="stable")
            rank = np.empty(len(self.doc_ids), dtype=np.int64)
            rank[by_id] = np.arange(len(self.doc_ids))
            self._id_rank = (rank, by_id, names)
        return self._id_rank

    def scores(self, text: str) -> list[float]:
        """BM25 score of every indexed document for one query ``text``, in ``doc_ids`` order (0 where none match)."""
        if self._model is None:
            raise RankwiseError("BM25Retriever.scores called before index() or load()")
        tokens = self._tokenize([text])
        inverse = {index: word for word, index in tokens.vocab.items()}
        words = [inverse[index] for index in tokens.ids[0]]
        known = [w for w in words if w in self._model.vocab_dict]
        if not known:
            return [0.0] * len(self.doc_ids)
        return self._model.get_scores(known).tolist()

    def save(self, directory: str | Path) -> None:
        if self._model is None:
            raise RankwiseError("nothing to save: call index() first")
        with atomic_dir(directory) as tmp:
            self._model.save(str(tmp), show_progress=False)
            write_json(tmp / "doc_ids.json", self.doc_ids, indent=None)
            write_manifest(
                tmp,
                KIND,
                {**self.params, "documents": len(self.doc_ids), "corpus_fingerprint": self.fingerprint},
            )

    @classmethod
    def load(cls, directory: str | Path, show_progress: bool = True, backend: str = "auto") -> BM25Retriever:
        import bm25s

        directory = Path(directory)
        params = read_manifest(directory, KIND, BM25Params, required=FILES)
        # bm25s computes every (term, document) score at index time with k1, b and method and stores the scores in
        # the .npy arrays, so a saved index cannot be searched with other values: the manifest's must agree with
        # those bm25s recorded beside its arrays (params.index.json, checksummed), else the index is refused
        # rather than searched with values it does not use; to change them, index again. Stop words and stemmer
        # are applied to query text at search time and the manifest is their only record: they are used as written.
        stored = read_json(directory / "params.index.json")
        for field in ("k1", "b", "method"):
            if getattr(params, field) != stored.get(field):
                raise IndexStoreError(
                    f"{directory / 'manifest.json'}: field 'params.{field}' is {getattr(params, field)!r} but the "
                    f"index's scores were computed with {field}={stored.get(field)!r}; rebuild the index to change it"
                )
        if params.method in NONOCCURRENCE_METHODS and not (directory / NONOCCURRENCE_FILE).is_file():
            raise IndexStoreError(f"{directory}: index file '{NONOCCURRENCE_FILE}' is missing; rebuild the index")
        retriever = cls(
            k1=params.k1,
            b=params.b,
            method=params.method,
            stopwords=params.stopwords,
            stemmer=params.stemmer,
            show_progress=show_progress,
            backend=backend,
        )
        retriever.fingerprint = params.corpus_fingerprint
        retriever.doc_ids = read_json(directory / "doc_ids.json")
        if len(retriever.doc_ids) != params.documents or stored.get("num_docs") != params.documents:
            raise IndexStoreError(
                f"{directory}: doc_ids.json has {len(retriever.doc_ids)} ids and the scores cover "
                f"{stored.get('num_docs')} documents, manifest says {params.documents}; rebuild the index"
            )
        retriever._model = bm25s.BM25.load(str(directory), show_progress=False)
        return retriever
