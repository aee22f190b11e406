"""Rerankers: ``rerank(queries, run, corpus, k) -> Run`` (contract in base.py).

``RERANKERS`` maps the names used in configs and on the command line to their classes, imported on demand
(torch and transformers load only when a reranker is actually built).
"""

from __future__ import annotations

import importlib
from typing import Any

from rankwise.errors import RankwiseError

RERANKERS = {
    "cross-encoder": "rankwise.rerank.cross_encoder:CrossEncoderReranker",
    "llm": "rankwise.rerank.llm:LLMReranker",
    "http": "rankwise.rerank.http:HTTPReranker",
}


def reranker_class(name: str) -> Any:
    """The reranker class registered under ``name`` (see ``RERANKERS``)."""
    if name not in RERANKERS:
        raise RankwiseError(f"unknown reranker {name!r}; expected one of: {', '.join(RERANKERS)}")
    module, _, attribute = RERANKERS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
