"""rankwise: retrieval-augmented generation where ranking is the lever.

The front door (names load on first use, so ``import rankwise`` stays light)::

    from rankwise import load_dataset, BM25Retriever, DenseRetriever, CrossEncoderReranker, evaluate, Pipeline

The floors below it: :mod:`rankwise.config` (every config dialect), :mod:`rankwise.build` (section ->
component), the stage rooms :mod:`~rankwise.data`, :mod:`~rankwise.retrieve`, :mod:`~rankwise.rerank`,
:mod:`~rankwise.generate`, :mod:`~rankwise.evaluate`, and above them :mod:`~rankwise.experiment` (the run path),
:mod:`~rankwise.train`, :mod:`~rankwise.rankrag`, :mod:`~rankwise.cli`. See docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from rankwise.types import Dataset, Document, Qrels, Query, Run

__version__ = "0.1.0"

# public name -> module that defines it (plain dict literal; imported on first access)
_LAZY = {
    "load_dataset": "rankwise.data",
    "BM25Retriever": "rankwise.retrieve.bm25",
    "DenseRetriever": "rankwise.retrieve.dense",
    "SparseRetriever": "rankwise.retrieve.sparse",
    "fuse": "rankwise.retrieve.fusion",
    "CrossEncoderReranker": "rankwise.rerank.cross_encoder",
    "LLMReranker": "rankwise.rerank.llm",
    "evaluate": "rankwise.evaluate.retrieval",
    "Pipeline": "rankwise.experiment.pipeline",
    "load_index": "rankwise.build",
    "register_reranker": "rankwise.build",
    "load_config": "rankwise.config.experiment",
    "run_experiment": "rankwise.experiment.runner",
}

__all__ = ["Dataset", "Document", "Qrels", "Query", "Run", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'rankwise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
