"""The one table of defaults that stages and configs share: default models per component kind and the
cross-encoder's window settings. Plain literals; stage rooms and config sections both read them from here.

Real users name hub models (e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``, ``Qwen/Qwen2.5-0.5B-Instruct``); the
names below that have a bundled offline copy resolve to it through :func:`rankwise.config.models.resolve_model`.
"""

from __future__ import annotations

from typing import Literal, get_args

# component kind -> default model name (plain dict literal)
DEFAULT_MODELS: dict[str, str] = {
    "dense": "sentence-transformers/all-MiniLM-L6-v2",
    "sparse": "splade-tiny",
    "cross-encoder": "cross-encoder/ms-marco-MiniLM-L6-v2",
    "llm": "smollm2",
    "generator": "smollm2",
}

# How a cross-encoder folds the scores of a long passage's windows (see rankwise.rerank.windows).
Aggregate = Literal["first", "max", "mean", "top2"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
# Sized for a 128-token cross-encoder: query and title leave room for about 70 words of text.
DEFAULT_WORDS, DEFAULT_STRIDE = 70, 60
