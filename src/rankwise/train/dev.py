"""The dev split the trainers hold out, and the first-stage weight picked on it.

Light on purpose (no torch, no sentence-transformers): the cross-encoder trainer and the RankRAG trainer both
hold out judged training queries with :func:`split_dev` and pick the ``interpolate: auto`` weight with
:func:`tune_interpolation`, so the two models' weights are picked the same way on the same queries.
"""

from __future__ import annotations

import random
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.evaluate.retrieval import evaluate
from rankwise.retrieve.fusion import fuse
from rankwise.types import Qrels, Query, Run

TENTHS = tuple(step / 10 for step in range(11))  # the grid both dev picks search: 0, 0.1, ..., 1


def split_dev(qrels: Qrels, queries: dict[str, Query], count: int, seed: int) -> tuple[list[str], list[str]]:
    """Judged query ids split into (train, dev): ``count`` dev ids drawn with ``seed``, both lists sorted."""
    judged = sorted(qid for qid in qrels if qid in queries and any(g > 0 for g in qrels[qid].values()))
    if count >= len(judged):
        raise RankwiseError(f"dev_queries={count} leaves no training query ({len(judged)} judged queries)")
    dev = set(random.Random(seed).sample(judged, count)) if count > 0 else set()
    return [q for q in judged if q not in dev], sorted(dev)


def tune_interpolation(reranked: Run, first_stage: Run, qrels: Qrels) -> dict[str, Any]:
    """The first-stage weight (0, 0.1, ..., 1) whose min-max fusion with ``reranked`` has the best nDCG@10.

    The fusion is the one ``rankwise rerank --interpolate W`` applies, over the reranked documents only; 1 is the
    first stage's own order (a reranker that only hurts on dev gets no say). Ties go to the smaller weight (trust
    the reranker more).
    """
    cut = {qid: {doc: first_stage[qid][doc] for doc in docs} for qid, docs in reranked.items()}
    by_weight: dict[str, float] = {}
    for weight in TENTHS:
        fused = (
            reranked
            if weight == 0
            else cut
            if weight == 1
            else fuse([reranked, cut], method="weighted", weights=[1 - weight, weight])
        )
        by_weight[f"{weight:.1f}"] = evaluate(fused, qrels, ["nDCG@10"])["nDCG@10"]
    best = max(by_weight, key=lambda w: (by_weight[w], -float(w)))
    return {"weight": float(best), "dev_ndcg@10": by_weight[best], "dev_ndcg@10_by_weight": by_weight}
