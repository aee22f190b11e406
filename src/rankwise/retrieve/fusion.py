"""Run fusion as pure functions: several runs in, one run out (``Run -> Run``).

Ranks inside an input run: 1-based, by score descending; equal scores keep the run's dict order
(earlier = better), the same rule :mod:`rankwise.evaluate.retrieval` uses.

Ties in the fused score are broken deterministically, in this order:

1. the doc's rank in the first run (a doc the run lacks ranks after every doc it has),
2. then its rank in the second run, the third, ... (same rule),
3. then the doc id, ascending.

Fused scores are kept exactly as computed (so two tied docs keep equal scores); the tie-break lives in the
**dict order** of each query's docs, which is the fused rank order, and every later step keeps it
(:func:`rankwise.types.sort_run` and ``top_k`` sort stably, ``write_run``/``read_run`` keep it through a TREC
file). Queries are the union over all runs, in order of first
appearance; a query missing from some runs is fused from the runs that have it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

from rankwise.errors import RankwiseError
from rankwise.types import Run

_MISSING = math.inf  # rank of a doc a run does not contain: after all the docs it does


def _check(runs: Sequence[Run], weights: Sequence[float] | None, depth: int | None) -> list[float]:
    if isinstance(runs, dict):
        raise RankwiseError("fusion takes a sequence of runs, not a single run")
    if not runs:
        raise RankwiseError("fusion needs at least one run")
    if weights is None:
        weights = [1.0] * len(runs)
    weights = [float(w) for w in weights]
    if len(weights) != len(runs):
        raise RankwiseError(f"fusion got {len(runs)} runs but {len(weights)} weights")
    for i, w in enumerate(weights):
        if not math.isfinite(w) or w < 0:
            raise RankwiseError(f"fusion weight {i} is {w!r}: weights must be finite and >= 0")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise RankwiseError(f"fusion depth must be a positive integer or None, not {depth!r}")
    for i, run in enumerate(runs):
        for qid, docs in run.items():
            for doc_id, score in docs.items():
                if not isinstance(score, int | float) or not math.isfinite(score):
                    raise RankwiseError(f"fusion run {i}: query {qid!r}, doc {doc_id!r}: score {score!r} is not finite")
    return weights


def _ranks(docs: dict[str, float]) -> dict[str, int]:
    """1-based ranks by score descending; equal scores keep dict order (``sorted`` is stable)."""
    return {doc_id: i for i, doc_id in enumerate(sorted(docs, key=lambda d: -docs[d]), start=1)}


def _query_ids(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(qid for run in runs for qid in run))


def _in_rank_order(scores: dict[str, float], rank_tables: list[dict[str, int]], depth: int | None) -> dict[str, float]:
    def key(doc_id: str) -> tuple[object, ...]:
        ranks = tuple(table.get(doc_id, _MISSING) for table in rank_tables)
        return (-scores[doc_id], *ranks, doc_id)

    order = sorted(scores, key=key)
    if depth is not None:
        order = order[:depth]
    return {doc_id: scores[doc_id] for doc_id in order}


def rrf(runs: Sequence[Run], k: int = 60, weights: Sequence[float] | None = None, depth: int | None = None) -> Run:
    """Reciprocal rank fusion (Cormack et al., 2009): ``score(d) = sum_i w_i / (k + rank_i(d))``.

    A run that lacks ``d`` adds nothing. ``weights`` default to 1 each; ``depth`` keeps the best
    ``depth`` fused docs per query. Ties: see the module docstring.
    """
    weights = _check(runs, weights, depth)
    if isinstance(k, bool) or not isinstance(k, int | float) or not math.isfinite(k) or k < 0:
        raise RankwiseError(f"rrf k must be a finite number >= 0, not {k!r}")
    fused: Run = {}
    for qid in _query_ids(runs):
        rank_tables = [_ranks(run.get(qid, {})) for run in runs]
        parts: dict[str, list[float]] = {}
        for weight, table in zip(weights, rank_tables, strict=True):
            for doc_id, rank in table.items():
                parts.setdefault(doc_id, []).append(weight / (k + rank))
        scores = {doc_id: math.fsum(values) for doc_id, values in parts.items()}
        fused[qid] = _in_rank_order(scores, rank_tables, depth)
    return fused


def min_max(docs: dict[str, float]) -> dict[str, float]:
    """Scale one query's scores to [0, 1]: ``(s - min) / (max - min)``; all-equal scores become 1.0.

    All-equal scores map to 1.0 (not 0.0) so that a run with one retrieved doc, or a flat ranking, still
    counts as having found its docs, just without preference among them.
    """
    if not docs:
        return {}
    low, high = min(docs.values()), max(docs.values())
    if high == low:
        return dict.fromkeys(docs, 1.0)
    span = high - low
    return {doc_id: (score - low) / span for doc_id, score in docs.items()}


def weighted(runs: Sequence[Run], weights: Sequence[float] | None = None, depth: int | None = None) -> Run:
    """Weighted score fusion: ``score(d) = sum_i w_i * minmax_i(d)``, per query.

    Each run's scores are min-max normalised per query (:func:`min_max`); a doc missing from a run
    contributes 0 for that run. ``weights`` default to 1 each and are used as given (not renormalised).
    Ties: see the module docstring.
    """
    weights = _check(runs, weights, depth)
    fused: Run = {}
    for qid in _query_ids(runs):
        per_run = [run.get(qid, {}) for run in runs]
        rank_tables = [_ranks(docs) for docs in per_run]
        parts: dict[str, list[float]] = {}
        for weight, docs in zip(weights, per_run, strict=True):
            for doc_id, value in min_max(docs).items():
                parts.setdefault(doc_id, []).append(weight * value)
        scores = {doc_id: math.fsum(values) for doc_id, values in parts.items()}
        fused[qid] = _in_rank_order(scores, rank_tables, depth)
    return fused


FUSERS: dict[str, Callable[..., Run]] = {"rrf": rrf, "weighted": weighted}


def fuse(runs: Sequence[Run], method: str = "rrf", **options: object) -> Run:
    """Fuse ``runs`` with the method named ``method`` (a key of :data:`FUSERS`); ``options`` go to it."""
    try:
        fuser = FUSERS[method]
    except KeyError:
        raise RankwiseError(f"unknown fusion method {method!r}: choose one of {', '.join(FUSERS)}") from None
    try:
        inspect.signature(fuser).bind(runs, **options)
    except TypeError as exc:  # an option the method does not take
        raise RankwiseError(f"fusion method {method!r}: {exc}") from exc
    return fuser(runs, **options)
