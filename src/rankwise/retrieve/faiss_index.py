"""The FAISS side of a dense index: the manifest's ``params`` schema, building an index of each kind, the IVF
training sample, the exact reference copy and recall against it. :mod:`rankwise.retrieve.dense` holds the
retriever (encoding, search, save/load) and calls these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rankwise.types import Run

Shards = Callable[[], Iterable[tuple[list[str], np.ndarray]]]


class FaissParams(BaseModel):
    """``params.faiss`` of a dense index's manifest; defaults stand for indexes saved before a setting existed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    hnsw_m: Annotated[int, Field(ge=1)] = 16
    ef_construction: Annotated[int, Field(ge=1)] = 200
    ef_search: Annotated[int, Field(ge=1)] = 64
    hnsw_storage: Literal["float16", "float32"] = "float32"
    nlist: Annotated[int | None, Field(ge=1)] = None
    nprobe: Annotated[int, Field(ge=1)] = 16
    seed: int = 0


class DenseParams(BaseModel):
    """``params`` of a dense index's ``manifest.json``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    dim: int
    documents: int
    corpus_fingerprint: str
    query_prompt: str = ""
    document_prompt: str = ""
    metric: Literal["inner_product_normalised"] = "inner_product_normalised"
    index_kind: Literal["exact", "hnsw", "ivf"] = "exact"
    faiss: FaissParams = FaissParams()
    recall_at_10_vs_exact: float | None = None
    precision: Literal["fp32", "bf16", "int8"] = "fp32"  # indexes saved before the setting: fp32
    precision_choice: dict[str, Any] | None = None  # requested, reason, cpu_flags (PrecisionChoice.record)


def faiss_disagreement(index: Any, params: DenseParams) -> tuple[str, Any, Any] | None:
    """The first manifest field that contradicts the FAISS index itself: ``(field, manifest value, index value)``."""
    import faiss

    kinds = {
        faiss.IndexFlatIP: "exact",
        faiss.IndexHNSWSQ: "hnsw",
        faiss.IndexHNSWFlat: "hnsw",
        faiss.IndexIVFFlat: "ivf",
    }
    kind = kinds.get(type(index), type(index).__name__)
    facts: list[tuple[str, Any, Any]] = [
        ("index_kind", params.index_kind, kind),
        ("dim", params.dim, index.d),
        ("documents", params.documents, index.ntotal),
    ]
    if kind == "hnsw":
        facts += [
            (
                "faiss.hnsw_storage",
                params.faiss.hnsw_storage,
                "float16" if type(index) is faiss.IndexHNSWSQ else "float32",
            ),
            ("faiss.hnsw_m", params.faiss.hnsw_m, index.hnsw.nb_neighbors(1)),
            ("faiss.ef_construction", params.faiss.ef_construction, index.hnsw.efConstruction),
        ]
    elif kind == "ivf":
        facts.append(("faiss.nlist", params.faiss.nlist, index.nlist))
    return next((fact for fact in facts if fact[1] != fact[2]), None)


def recall_at_k(approximate: Run, exact: Run, k: int = 10) -> float:
    """Mean over queries of |approximate top-k ∩ exact top-k| / |exact top-k| (runs in rank order)."""
    values = []
    for qid, docs in exact.items():
        truth = list(docs)[:k]
        if truth:
            found = set(list(approximate.get(qid, {}))[:k])
            values.append(len(found.intersection(truth)) / len(truth))
    return float(np.mean(values)) if values else 0.0


def new_index(kind: str, params: dict[str, Any], dim: int, rows: int) -> Any:
    """An empty FAISS index of ``kind`` (exact | hnsw | ivf) for ``rows`` vectors of ``dim``; an IVF index without
    ``params["nlist"]`` gets one sized from ``rows`` (written back into ``params``, so the manifest records it)."""
    import faiss

    if kind == "exact":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        metric = faiss.METRIC_INNER_PRODUCT
        if params["hnsw_storage"] == "float32":
            index = faiss.IndexHNSWFlat(dim, params["hnsw_m"], metric)
        else:  # fp16 needs no training; exact_copy() reconstructs the stored (fp16-rounded) vectors
            index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, params["hnsw_m"], metric)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
        return index
    if params["nlist"] is None:
        params["nlist"] = max(1, min(int(4 * math.sqrt(rows)), rows // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, params["nlist"], faiss.METRIC_INNER_PRODUCT)
    index.nprobe = params["nprobe"]
    return index


def training_sample(shards: Shards, rows: int, nlist: int, seed: int) -> np.ndarray:
    """Up to 256 vectors per IVF cell, drawn with ``seed`` from across all shards."""
    wanted = min(rows, 256 * int(nlist))
    chosen = np.sort(np.random.default_rng(seed).choice(rows, wanted, replace=False))
    parts, start = [], 0
    for _, shard in shards():
        local = chosen[(chosen >= start) & (chosen < start + len(shard))] - start
        parts.append(np.asarray(shard[local], dtype=np.float32))
        start += len(shard)
    return np.ascontiguousarray(np.concatenate(parts))


def exact_copy(index: Any, kind: str) -> Any:
    """An ``IndexFlatIP`` over the vectors ``index`` stores (reconstructed from it): the exact reference."""
    import faiss

    source = index
    if kind == "ivf":
        source = faiss.clone_index(index)
        source.make_direct_map()
    exact = faiss.IndexFlatIP(index.d)
    exact.add(source.reconstruct_n(0, source.ntotal))
    return exact
