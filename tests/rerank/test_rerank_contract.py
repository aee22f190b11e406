"""The shared rerank() contract: depth, tie-breaking, id checks (with a hand-checkable word-overlap scorer)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rankwise.errors import RankwiseError
from rankwise.rerank.base import Reranker, assemble_run, collect_candidates
from rankwise.types import Document, Query


class OverlapReranker(Reranker):
    """Score = number of query words in the passage (lower-cased, punctuation stripped)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.seen.extend(pairs)
        words = lambda text: {w.strip(".,?").lower() for w in text.split()}  # noqa: E731
        return [float(len(words(q) & words(p))) for q, p in pairs]


def test_rerank_orders_by_score_and_keeps_only_top_k(toy_corpus, toy_queries):
    run = {"q1": {"d2": 9.0, "d3": 8.0, "d1": 7.0, "d4": 6.0}}
    reranker = OverlapReranker()
    out = reranker.rerank(toy_queries, run, toy_corpus, k=3)
    # d4 (rank 4) is beyond k=3: never scored, not returned.
    assert [passage for _, passage in reranker.seen] == [
        toy_corpus["d2"].contents,
        toy_corpus["d3"].contents,
        toy_corpus["d1"].contents,
    ]
    assert list(out["q1"]) == ["d1", "d2", "d3"]  # "cats"+"purr" = 2 overlaps; d2, d3 tie at 0
    assert out["q1"]["d1"] == 2.0


def test_reranked_ties_keep_the_first_stage_order(toy_corpus, toy_queries):
    # d3 ranks above d2 in the first stage; both score 0 after reranking -> first-stage order (project rule).
    run = {"q1": {"d3": 5.0, "d2": 4.0}}
    out = OverlapReranker().rerank(toy_queries, run, toy_corpus, k=10)
    assert list(out["q1"]) == ["d3", "d2"]


def test_first_stage_ties_keep_the_run_order_when_cutting_at_k(toy_corpus, toy_queries):
    # Equal first-stage scores: the run's own order decides which doc makes the top-k (stable sort_run).
    a = OverlapReranker().rerank(toy_queries, {"q1": {"d3": 1.0, "d2": 1.0}}, toy_corpus, k=1)
    b = OverlapReranker().rerank(toy_queries, {"q1": {"d2": 1.0, "d3": 1.0}}, toy_corpus, k=1)
    assert a == {"q1": {"d3": 0.0}}
    assert b == {"q1": {"d2": 0.0}}


def test_unknown_ids_are_named(toy_corpus, toy_queries):
    with pytest.raises(RankwiseError, match="'nope'"):
        collect_candidates(toy_queries, {"q1": {"nope": 1.0}}, toy_corpus, 10)
    with pytest.raises(RankwiseError, match="query 'q9'"):
        collect_candidates(toy_queries, {"q9": {"d1": 1.0}}, toy_corpus, 10)
    with pytest.raises(RankwiseError, match="at least 1"):
        collect_candidates(toy_queries, {"q1": {"d1": 1.0}}, toy_corpus, 0)


def test_empty_queries_are_dropped_and_pairs_use_title_and_text(toy_corpus, toy_queries):
    candidates = collect_candidates(toy_queries, {"q1": {}, "q2": {"d4": 1.0}}, toy_corpus, None)
    assert candidates.keys == [("q2", "d4")]
    assert candidates.pairs == [("which animals fly", "Birds Birds sing in the morning and fly south.")]
    assert OverlapReranker().rerank(toy_queries, {"q1": {}}, toy_corpus) == {}


def test_assemble_checks_lengths():
    with pytest.raises(RankwiseError, match="2 scores for 1 pairs"):
        assemble_run([("q", "d")], [1.0, 2.0])


def test_documents_without_title_use_text_only():
    corpus = {"x": Document("x", "", "plain text")}
    reranker = OverlapReranker()
    reranker.rerank({"q": Query("q", "text")}, {"q": {"x": 1.0}}, corpus)
    assert reranker.seen == [("text", "plain text")]
