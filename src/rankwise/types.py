"""The currency between stages.

``Run`` and ``Qrels`` are plain dicts in the format ranx, ir_measures and pyserini already speak:
query id -> doc id -> score (a float for runs, an int relevance grade for qrels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """Title and text joined the way every retriever indexes them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    history: tuple[str, ...] = ()


@dataclass
class Dataset:
    """A loaded collection: corpus, queries and (possibly empty) relevance judgements.

    ``warnings`` holds counted, human-readable notes about records that were skipped on load
    (empty queries, qrels naming unknown ids, ...): skipping is never silent. ``answers``: the gold answer
    strings of each query, for open-domain QA data (scored by answer recall@k rather than judgements).
    """

    name: str
    corpus: dict[str, Document]
    queries: dict[str, Query]
    qrels: Qrels = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    answers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def judged_queries(self) -> dict[str, Query]:
        """The queries that have at least one judgement, in load order."""
        return {qid: q for qid, q in self.queries.items() if qid in self.qrels}

    def stats(self) -> dict[str, int]:
        return {
            "documents": len(self.corpus),
            "queries": len(self.queries),
            "judged_queries": sum(1 for qid in self.qrels if qid in self.queries),
            "qrels": sum(len(docs) for docs in self.qrels.values()),
        }


def sort_run(run: Run) -> Run:
    """Return ``run`` with each query's docs in rank order: score descending, ties in their current order.

    The tie rule of the whole project: a producer of a run decides the order of its ties and every later step
    keeps it (the sort is stable). Retrievers emit ties by doc id; rerankers keep the first-stage order of the
    documents they score equally; fusion breaks ties by the better rank in the first run, then the next (see
    ``retrieve/fusion.py``); a run read from a TREC file keeps the file's ranks. So a run written and read back
    evaluates exactly as it did in memory.
    """
    return {qid: dict(sorted(docs.items(), key=lambda item: -item[1])) for qid, docs in run.items()}


def top_k(run: Run, k: int) -> Run:
    """Keep the ``k`` best docs of every query (ties in their current order, see :func:`sort_run`)."""
    return {qid: dict(list(docs.items())[:k]) for qid, docs in sort_run(run).items()}
