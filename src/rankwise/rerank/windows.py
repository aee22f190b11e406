"""Scoring a long passage as several windows, then folding the window scores into one (MaxP-style).

A cross-encoder reads at most ``max_length`` tokens, so with 128 tokens it sees roughly the first 70 words of a
SciFact abstract after the query and title; the rest of the evidence is cut off. Window scoring also scores the
title followed by later stretches of the text and combines the scores, as in Dai & Callan's MaxP (SIGIR 2019).
sentence-transformers and rerankers score a pair as one truncated text, so the splitting and folding live here.

The first window is always the document's plain ``contents``, the exact text plain reranking scores (the model
truncates it), so ``aggregate="first"`` *is* plain reranking and window scoring only adds pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rankwise.config.defaults import AGGREGATES, DEFAULT_STRIDE, DEFAULT_WORDS, Aggregate
from rankwise.errors import RankwiseError
from rankwise.types import Document

__all__ = ["AGGREGATES", "DEFAULT_STRIDE", "DEFAULT_WORDS", "Aggregate", "check_windows", "fold", "passage_windows"]
# A later window must start at least this many words before the end of the text: shorter tails repeat the end
# of the previous window and cost a whole forward pass for a few new words.
MIN_NEW_WORDS = 20


def check_windows(aggregate: str, words: int, stride: int) -> None:
    """Raise :class:`RankwiseError` for an unknown aggregate or a window/stride that cannot tile a text."""
    if aggregate not in AGGREGATES:
        raise RankwiseError(f"window aggregate must be one of {', '.join(AGGREGATES)}, not {aggregate!r}")
    if words < 1 or stride < 1:
        raise RankwiseError(f"window words and stride must be positive, got {words} and {stride}")
    if stride > words:
        raise RankwiseError(f"window stride ({stride}) larger than the window ({words} words) would skip text")


def passage_windows(doc: Document, words: int, stride: int) -> list[str]:
    """The texts ``doc`` is scored as: its contents, then its title before each later ``words``-word window.

    Window ``k`` (k >= 1) holds the text's words ``[k * stride, k * stride + words)``; windows stop once fewer
    than :data:`MIN_NEW_WORDS` words would remain from their start.
    """
    body = doc.text.split()
    texts = [doc.contents]
    start = stride
    while start < len(body) - MIN_NEW_WORDS:
        window = " ".join(body[start : start + words])
        texts.append(f"{doc.title} {window}".strip() if doc.title else window)
        start += stride
    return texts


def _top2(scores: Sequence[float]) -> float:
    best = sorted(scores, reverse=True)[:2]
    return sum(best) / len(best)


_FOLDS: dict[str, Callable[[Sequence[float]], float]] = {
    "first": lambda scores: scores[0],
    "max": max,
    "mean": lambda scores: sum(scores) / len(scores),
    "top2": _top2,
}


def fold(scores: Sequence[float], aggregate: str) -> float:
    """One score from a document's window scores (the first is the plain-contents window).

    ``first``: plain reranking; ``max``: the best window (MaxP); ``mean``: all windows equally; ``top2``: the mean
    of the two best windows (one strong window is not enough, a weak tail does not dilute it).
    """
    check_windows(aggregate, DEFAULT_WORDS, DEFAULT_STRIDE)
    if not scores:
        raise RankwiseError("a document with no window scores")
    return float(_FOLDS[aggregate](scores))
