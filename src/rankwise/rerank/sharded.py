"""Reranking on an engine (:mod:`rankwise.engine`): the run cut into shards of queries, each reranked by a
reranker that the engine's worker builds for itself (one model per Ray actor).

:class:`EngineReranker` keeps the reranker contract, ``rerank(queries, run, corpus, k) -> Run``, so the rerank
stage, ``rankwise rerank`` and the Python API use it unchanged. It checks every id on the driver (the same errors
as a local reranker), ships each shard only the queries and passages it needs, and merges the parts in the run's
query order. Each query is scored whole inside one shard, by the same reranker code as locally; scores equal a
local run's to float rounding (a shard's batches hold other pairs than one big run's), as with the rerank stage's
``checkpoint_every`` chunks, which are also how a killed reranking resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

from rankwise.engine import Progress, Shard
from rankwise.rerank.base import collect_candidates
from rankwise.types import Document, Query, Run, sort_run


def _rerank_shard(reranker: Any, payload: tuple[Any, ...], report: Callable[[int], None] | None) -> Run:
    queries, run, corpus, k = payload
    return dict(reranker.rerank(queries, run, corpus, k=k))


class RerankerRecipe:
    """Builds the worker inside the process that runs it: ``make()`` (picklable) gives the reranker."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __call__(self) -> Callable[[Any, Callable[[int], None] | None], Run]:
        return partial(_rerank_shard, self.make())


class EngineReranker:
    """``rerank(queries, run, corpus, k) -> Run`` with shards of ``queries_per_shard`` queries run on ``engine``,
    each by the reranker ``make()`` builds in the worker (``make`` must pickle for a Ray engine)."""

    def __init__(
        self, make: Callable[[], Any], engine: Any, queries_per_shard: int = 64, show_progress: bool = True
    ) -> None:
        self.recipe = RerankerRecipe(make)  # one object: the engine keeps its workers for the next call
        self.engine = engine
        self.queries_per_shard = queries_per_shard
        self.show_progress = show_progress

    def rerank(
        self, queries: Mapping[str, Query], run: Run, corpus: Mapping[str, Document], k: int | None = 100
    ) -> Run:
        candidates = collect_candidates(queries, run, corpus, k)  # every id checked here, as a local reranker does
        if not candidates.pairs:
            return {}
        ordered = {qid: docs for qid, docs in sort_run(run).items() if docs}
        qids = list(ordered)
        progress = Progress(len(candidates.pairs), -(-len(qids) // self.queries_per_shard), "reranking", "pair",
                            enabled=self.show_progress)  # fmt: skip
        parts: dict[int, Run] = {}
        try:
            for shard, part in self.engine.map(self.recipe, self._shards(qids, ordered, queries, corpus, k),
                                               progress, keep=True):  # fmt: skip
                parts[shard.index] = part
        finally:
            progress.close()
        reranked: Run = {}
        for index in sorted(parts):
            reranked.update(parts[index])
        return reranked

    def _shards(
        self,
        qids: list[str],
        run: Run,
        queries: Mapping[str, Query],
        corpus: Mapping[str, Document],
        k: int | None,
    ) -> Iterator[Shard]:
        for index, start in enumerate(range(0, len(qids), self.queries_per_shard)):
            chunk = qids[start : start + self.queries_per_shard]
            top = {qid: dict(list(run[qid].items())[:k]) for qid in chunk}
            docs = {doc_id: corpus[doc_id] for ranked in top.values() for doc_id in ranked}
            pairs = sum(len(ranked) for ranked in top.values())
            name = f"rerank shard {index} (queries {chunk[0]}..{chunk[-1]})"
            yield Shard(index, name, ({qid: queries[qid] for qid in chunk}, top, docs, k), pairs)

    def close(self) -> None:
        self.engine.close()
