"""The pipeline wiring with stand-in parts: what each stage receives and what comes out."""

from __future__ import annotations

import pytest

from rankwise.errors import RankwiseError
from rankwise.experiment.pipeline import FusedRetriever, Pipeline, restrict_run
from rankwise.generate.answer import Answer
from rankwise.generate.citations import build_answer
from rankwise.types import Document, Query

CORPUS = {d: Document(d, d.upper(), f"text of {d}") for d in ("a", "b", "c", "d")}


class FixedRetriever:
    def __init__(self, ranking: dict[str, float]) -> None:
        self.ranking = ranking
        self.seen: list[tuple[dict[str, Query], int]] = []

    def search(self, queries, k=100):
        self.seen.append((dict(queries), k))
        return {qid: dict(list(self.ranking.items())[:k]) for qid in queries}


class ReverseReranker:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def rerank(self, queries, run, corpus, k=100):
        self.seen.extend(q.text for q in queries.values())
        return {qid: {d: float(i) for i, d in enumerate(docs)} for qid, docs in run.items()}


class CitingGenerator:
    """Answers '<question> [1]' and records the requests."""

    def __init__(self) -> None:
        self.requests = []

    def generate_batch(self, requests):
        self.requests.extend(requests)
        return [build_answer(f"{r.question} [1]", [p.id for p in r.passages]) for r in requests]


def test_ask_retrieves_takes_top_k_and_answers() -> None:
    retriever = FixedRetriever({"a": 3.0, "b": 2.0, "c": 1.0})
    generator = CitingGenerator()
    result = Pipeline(retriever, CORPUS, generator=generator, k=2, candidates=10).ask("what?")
    assert retriever.seen[0][1] == 10
    assert [p.id for p in result.passages] == ["a", "b"]
    assert result.scores == [3.0, 2.0]
    assert result.answer.cited_ids == ["a"]
    assert generator.requests[0].question == "what?"
    assert [p.id for p in generator.requests[0].passages] == ["a", "b"]
    assert set(result.latency) == {"retrieve_s", "generate_s", "total_s"}
    assert result.latency["total_s"] == pytest.approx(result.latency["retrieve_s"] + result.latency["generate_s"])


def test_reranker_reorders_and_sees_the_search_query() -> None:
    reranker = ReverseReranker()
    generator = CitingGenerator()
    pipeline = Pipeline(
        FixedRetriever({"a": 3.0, "b": 2.0, "c": 1.0}), CORPUS, generator=generator, reranker=reranker, k=2
    )
    conversation = Query("q1", "and it?", ("user: tell me about c",))
    output = pipeline.run({"q1": conversation}, search_queries={"q1": Query("q1", "what is c?")})
    assert reranker.seen == ["what is c?"]  # retrieval and reranking see the rewritten query
    assert generator.requests[0].question == "and it?"  # the generator sees the conversation
    assert generator.requests[0].history == ("user: tell me about c",)
    assert list(output.run["q1"]) == ["c", "b", "a"]
    assert list(output.first_stage["q1"]) == ["a", "b", "c"]
    assert [p.id for p in output.results["q1"].passages] == ["c", "b"]
    assert set(output.timings) == {"retrieve_s", "rerank_s", "generate_s", "total_s"}


def test_without_generator_only_ranks() -> None:
    output = Pipeline(FixedRetriever({"a": 1.0}), CORPUS, k=1).run({"q": Query("q", "x")})
    assert output.results["q"].answer == Answer(text="")
    assert "generate_s" not in output.timings


def test_restrict_run_keeps_allowed_docs_and_ranks_the_rest_last() -> None:
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}, "other": {"a": 1.0}}
    restricted = restrict_run(run, {"q": ["c", "a", "d"]})
    assert restricted["q"] == {"a": 3.0, "c": 1.0, "d": 0.0}
    assert restricted["other"] == {"a": 1.0}
    assert restrict_run({"q": {}}, {"q": ["b", "a"]})["q"] == {"a": -1.0, "b": -2.0}


def test_fused_retriever_uses_rrf() -> None:
    first = FixedRetriever({"a": 2.0, "b": 1.0})
    second = FixedRetriever({"b": 5.0, "c": 4.0})
    fused = FusedRetriever([first, second]).search({"q": Query("q", "x")}, k=3)
    # RRF k=60: b = 1/62 + 1/61, a = 1/61, c = 1/62
    assert list(fused["q"]) == ["b", "a", "c"]
    assert fused["q"]["b"] == pytest.approx(1 / 62 + 1 / 61)
    with pytest.raises(RankwiseError, match="at least two"):
        FusedRetriever([first])


def test_errors_are_explicit() -> None:
    with pytest.raises(RankwiseError, match="not in the corpus"):
        Pipeline(FixedRetriever({"zzz": 1.0}), CORPUS, k=1).run({"q": Query("q", "x")})
    with pytest.raises(RankwiseError, match="lacks 1 query ids"):
        Pipeline(FixedRetriever({"a": 1.0}), CORPUS).run({"q": Query("q", "x")}, search_queries={})
    with pytest.raises(RankwiseError, match="at least 1"):
        Pipeline(FixedRetriever({}), CORPUS, k=0)
