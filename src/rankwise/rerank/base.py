"""The reranker contract: ``rerank(queries, run, corpus, k) -> Run`` over the top-``k`` of a first-stage run.

A reranker only has to say how to score ``(query text, passage text)`` pairs (:meth:`Reranker.score`); this base
class gathers the pairs from the run, checks every id, and writes the reranked run.

The top-``k`` is taken in the run's rank order (equal first-stage scores keep their order, see ``sort_run``).
Documents the reranker scores equally keep that first-stage order (a stable sort, as the rerankers library
does): a reranker that cannot tell two passages apart leaves them as the first stage ranked them. The returned
run is in rank order, so reranking is deterministic and survives a TREC round trip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rankwise.errors import RankwiseError
from rankwise.types import Document, Query, Run, sort_run


@dataclass(frozen=True)
class Candidates:
    """The pairs a reranker scores: ``pairs[i]`` is (query text, passage text) for ``keys[i]`` = (qid, doc id)."""

    keys: list[tuple[str, str]]
    pairs: list[tuple[str, str]]


def collect_candidates(
    queries: Mapping[str, Query], run: Run, corpus: Mapping[str, Document], k: int | None
) -> Candidates:
    """The top-``k`` (all when ``k`` is None) documents of every query of ``run`` as scorable pairs.

    Raises :class:`RankwiseError` naming the first query or document id that ``queries``/``corpus`` lack.
    """
    if k is not None and k < 1:
        raise RankwiseError(f"rerank depth k must be at least 1, not {k}")
    keys: list[tuple[str, str]] = []
    pairs: list[tuple[str, str]] = []
    for qid, docs in sort_run(run).items():
        if not docs:
            continue
        query = queries.get(qid)
        if query is None:
            raise RankwiseError(f"run names query {qid!r}, which is not among the {len(queries)} queries given")
        for doc_id in list(docs)[:k]:
            doc = corpus.get(doc_id)
            if doc is None:
                raise RankwiseError(
                    f"run names document {doc_id!r} (query {qid!r}), which is not in the corpus "
                    f"of {len(corpus)} documents"
                )
            keys.append((qid, doc_id))
            pairs.append((query.text, doc.contents))
    return Candidates(keys=keys, pairs=pairs)


def interpolate(first_stage: Run, reranked: Run, weight: float) -> Run:
    """Min-max fuse the reranker's scores with the first stage's, ``weight`` on the first stage (in [0, 1]).

    The reranked run goes first, so fused ties keep the reranker's order."""
    from rankwise.retrieve.fusion import fuse

    if not 0 <= weight <= 1:
        raise RankwiseError(f"the first-stage weight must be in [0, 1], not {weight}")
    return fuse([reranked, first_stage], method="weighted", weights=[1 - weight, weight])


def assemble_run(keys: Sequence[tuple[str, str]], scores: Sequence[float]) -> Run:
    """Group scores by query and order each query's docs by score descending; ties keep their order in ``keys``
    (the first-stage rank order :func:`collect_candidates` gives them)."""
    if len(keys) != len(scores):
        raise RankwiseError(f"reranker returned {len(scores)} scores for {len(keys)} pairs")
    grouped: dict[str, list[tuple[float, str]]] = {}
    for (qid, doc_id), score in zip(keys, scores, strict=True):
        grouped.setdefault(qid, []).append((float(score), doc_id))
    run: Run = {}
    for qid, items in grouped.items():
        items.sort(key=lambda item: -item[0])  # stable: ties stay in first-stage order
        run[qid] = {doc_id: score for score, doc_id in items}
    return run


class Reranker(ABC):
    """Base class: subclasses implement :meth:`score`; :meth:`rerank` is shared."""

    @abstractmethod
    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """One relevance score per (query text, passage text) pair, higher = more relevant, in input order."""

    def rerank(
        self, queries: Mapping[str, Query], run: Run, corpus: Mapping[str, Document], k: int | None = 100
    ) -> Run:
        """Rescore the top-``k`` documents of every query in ``run``; returns only those, in rank order.

        Queries whose run is empty are left out of the result.
        """
        candidates = collect_candidates(queries, run, corpus, k)
        if not candidates.pairs:
            return {}
        scores = self.score(candidates.pairs)
        return assemble_run(candidates.keys, scores)


class progress:
    """A rich progress bar as a context manager yielding ``advance(n)``; a no-op when disabled.

    When stderr is not a terminal (a log file, CI), rich draws nothing until the end, so a plain line with the
    count, the rate and the time left is printed instead, at most every ``every`` seconds and once at the end.
    """

    def __init__(self, total: int, enabled: bool, description: str = "reranking", every: float = 30.0) -> None:
        self.total, self.enabled, self.description, self.every = total, enabled, description, every
        self._bar: Any = None
        self._plain: _PlainProgress | None = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import Progress

        console = Console(stderr=True)
        if not console.is_terminal:
            self._plain = _PlainProgress(self.total, self.description, self.every)
            return self._plain.advance
        self._bar = Progress(transient=True, console=console)
        self._bar.start()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self._plain is not None and exc[0] is None:
            self._plain.report()


class _PlainProgress:
    """``reranking: 1,200/30,000 pairs, 24.1/s, ~19.9 min left`` lines on stderr, throttled."""

    def __init__(self, total: int, description: str, every: float) -> None:
        import time

        self.total, self.description, self.every = total, description, every
        self.done = 0
        self.started = self.last = time.perf_counter()

    def advance(self, n: int) -> None:
        import time

        self.done += n
        if time.perf_counter() - self.last >= self.every and self.done < self.total:
            self.report()

    def report(self) -> None:
        import sys
        import time

        now = time.perf_counter()
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        left = f", ~{(self.total - self.done) / rate / 60:.1f} min left" if 0 < self.done < self.total else ""
        line = f"{self.description}: {self.done:,}/{self.total:,} pairs, {rate:.1f}/s{left}"
        print(line, file=sys.stderr, flush=True)
