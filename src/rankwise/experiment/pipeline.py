"""Wiring only: retriever → optional reranker → top-k → generator, timing each stage.

The parts are passed in already built (a retriever with ``search(queries, k) -> Run``, a reranker with
``rerank(queries, run, corpus, k) -> Run``, a generator with ``generate_batch(requests) -> list[Answer]``);
nothing here reads configuration or picks classes by name.

Two sets of queries may flow through: ``search_queries`` (what retrieval and reranking see, e.g. a rewritten
standalone question) and ``queries`` (what the generator answers, with the conversation history). They default
to the same thing.

Latency: stages run batched over all queries, so each result carries the stage's total time divided by the
number of queries (``retrieve_s``, ``rerank_s``, ``generate_s``, ``total_s``); :class:`PipelineOutput.timings`
holds the totals. For a single question (:meth:`Pipeline.ask`) the two are the same.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rankwise.errors import RankwiseError
from rankwise.generate.answer import Answer
from rankwise.generate.base import GenerationRequest
from rankwise.retrieve.fusion import fuse
from rankwise.types import Document, Query, Run, sort_run


class Retriever(Protocol):
    def search(self, queries: Mapping[str, Query], k: int = 100) -> Run: ...


class Reranker(Protocol):
    def rerank(
        self, queries: Mapping[str, Query], run: Run, corpus: Mapping[str, Document], k: int | None = 100
    ) -> Run: ...


class Generator(Protocol):
    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Answer]: ...


class FusedRetriever:
    """Several retrievers searched with the same queries, their runs fused (RRF by default): a hybrid."""

    def __init__(
        self, retrievers: Sequence[Retriever], method: str = "rrf", depth: int | None = None, **options: Any
    ) -> None:
        if len(retrievers) < 2:
            raise RankwiseError("FusedRetriever needs at least two retrievers")
        self.retrievers = list(retrievers)
        self.method = method
        self.depth = depth
        self.options = options

    def search(self, queries: Mapping[str, Query], k: int = 100) -> Run:
        runs = [r.search(queries, k=max(k, self.depth or 0)) for r in self.retrievers]
        return fuse(runs, method=self.method, depth=k, **self.options)


def restrict_run(run: Run, allowed: Mapping[str, Collection[str]]) -> Run:
    """Keep only each query's allowed docs, in rank order; allowed docs the run lacks follow, by doc id.

    Appended docs get scores below every ranked one (so a restricted run always ranks the whole allowed set,
    as the HotpotQA distractor setting needs). Queries without an entry in ``allowed`` are kept unchanged.
    """
    out: Run = {}
    for qid, docs in sort_run(run).items():
        if qid not in allowed:
            out[qid] = dict(docs)
            continue
        permitted = set(allowed[qid])
        kept = {d: s for d, s in docs.items() if d in permitted}
        floor = min(kept.values(), default=0.0)
        for offset, doc_id in enumerate(sorted(permitted - kept.keys()), start=1):
            kept[doc_id] = floor - offset
        out[qid] = kept
    return out


@dataclass
class PipelineResult:
    """One answered question: the answer, the passages shown ([1] is ``passages[0]``) and their scores."""

    query: Query
    answer: Answer
    passages: list[Document]
    scores: list[float]
    latency: dict[str, float] = field(default_factory=dict)


@dataclass
class PipelineOutput:
    results: dict[str, PipelineResult]
    run: Run  # the final ranking (after reranking), all candidates, in rank order
    first_stage: Run
    timings: dict[str, float]


class Pipeline:
    """Retrieve ``candidates`` docs, optionally rerank them, answer from the top ``k``."""

    def __init__(
        self,
        retriever: Retriever,
        corpus: Mapping[str, Document],
        generator: Generator | None = None,
        reranker: Reranker | None = None,
        k: int = 5,
        candidates: int = 100,
    ) -> None:
        if k < 1 or candidates < 1:
            raise RankwiseError(f"k and candidates must be at least 1 (got k={k}, candidates={candidates})")
        self.retriever = retriever
        self.corpus = corpus
        self.generator = generator
        self.reranker = reranker
        self.k = k
        self.candidates = max(candidates, k)

    def run(
        self,
        queries: Mapping[str, Query],
        search_queries: Mapping[str, Query] | None = None,
        restrict: Mapping[str, Collection[str]] | None = None,
    ) -> PipelineOutput:
        """Run every stage over ``queries``; ``restrict`` limits each query's candidates (applied after search)."""
        search_queries = queries if search_queries is None else search_queries
        missing = [qid for qid in queries if qid not in search_queries]
        if missing:
            raise RankwiseError(f"search_queries lacks {len(missing)} query ids (e.g. {missing[0]!r})")
        searched = {qid: search_queries[qid] for qid in queries}
        n = max(1, len(queries))
        timings: dict[str, float] = {}

        start = time.perf_counter()
        first = self.retriever.search(searched, k=self.candidates)
        if restrict is not None:
            first = restrict_run(first, restrict)
        first = sort_run(first)
        timings["retrieve_s"] = time.perf_counter() - start

        final = first
        if self.reranker is not None:
            start = time.perf_counter()
            final = sort_run(self.reranker.rerank(searched, first, self.corpus, k=self.candidates))
            timings["rerank_s"] = time.perf_counter() - start

        results: dict[str, PipelineResult] = {}
        shown: dict[str, list[tuple[str, float]]] = {qid: list(final.get(qid, {}).items())[: self.k] for qid in queries}
        for qid, items in shown.items():
            unknown = [d for d, _ in items if d not in self.corpus]
            if unknown:
                raise RankwiseError(f"query {qid!r}: retrieved document {unknown[0]!r} is not in the corpus")
        if self.generator is not None:
            requests = [
                GenerationRequest(q.text, tuple(self.corpus[d] for d, _ in shown[qid]), tuple(q.history))
                for qid, q in queries.items()
            ]
            start = time.perf_counter()
            answers = self.generator.generate_batch(requests)
            timings["generate_s"] = time.perf_counter() - start
        else:
            answers = [Answer(text="", meta={"generator": None}) for _ in queries]
        timings["total_s"] = sum(timings.values())
        per_query = {name: value / n for name, value in timings.items()}
        for (qid, query), answer in zip(queries.items(), answers, strict=True):
            results[qid] = PipelineResult(
                query=query,
                answer=answer,
                passages=[self.corpus[d] for d, _ in shown[qid]],
                scores=[s for _, s in shown[qid]],
                latency=dict(per_query),
            )
        return PipelineOutput(results=results, run=final, first_stage=first, timings=timings)

    def ask(self, question: str | Query, search_text: str | None = None) -> PipelineResult:
        """Answer one question (a string, or a Query with history); ``search_text`` overrides what is searched."""
        query = question if isinstance(question, Query) else Query(id="q", text=question)
        searched = Query(query.id, search_text, query.history) if search_text else query
        output = self.run({query.id: query}, search_queries={query.id: searched})
        return output.results[query.id]
