"""BM25 over bm25s, indexing title + text.

Defaults are bm25s' own (Lucene BM25, k1=1.5, b=0.75) plus English stop words and the Snowball English stemmer
(PyStemmer). On SciFact test they give nDCG@10 0.686; Pyserini's BEIR setting (k1=0.9, b=0.4) gives 0.676 here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    ) -> None:
        self.params: dict[str, Any] = {
            "k1": k1,
            "b": b,
            "method": method,
            "stopwords": stopwords,
            "stemmer": stemmer,
        }
        self.show_progress = show_progress
        self.doc_ids: list[str] = []
        self.fingerprint = ""
        self._model: Any = None

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
        # Tokens absent from the vocabulary are dropped by bm25s; an all-unknown query scores 0 everywhere.
        docs, scores = self._model.retrieve(tokens, k=k, show_progress=self.show_progress, n_threads=0)
        # bm25s returns each row sorted by score; only rows holding equal scores need the doc-id tie-break.
        has_ties = (scores[:, 1:] == scores[:, :-1]).any(axis=1)
        rows, values = docs.tolist(), scores.tolist()
        run: Run = {}
        for row, qid in enumerate(queries):
            names = [self.doc_ids[i] for i in rows[row]]
            if has_ties[row]:
                run[qid] = dict(sorted(zip(names, values[row], strict=True), key=lambda item: (-item[1], item[0])))
            else:
                run[qid] = dict(zip(names, values[row], strict=True))
        return run

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
    def load(cls, directory: str | Path, show_progress: bool = True) -> BM25Retriever:
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
