"""BM25 over bm25s: real-data quality, persistence, and refusal of corrupted or mismatched indexes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankwise.build import load_index
from rankwise.data import load_dataset
from rankwise.errors import IndexStoreError, RankwiseError
from rankwise.evaluate.retrieval import evaluate
from rankwise.retrieve.bm25 import BM25Retriever
from rankwise.types import Document, Query

TOY = {
    "a": Document("a", "Cats", "cats purr and sleep all day"),
    "b": Document("b", "Dogs", "dogs bark at the postman"),
    "c": Document("c", "", "the postman delivers letters"),
}


def test_search_ranks_the_matching_document_first_and_orders_ties_by_id() -> None:
    retriever = BM25Retriever(show_progress=False)
    retriever.index(TOY)
    run = retriever.search({"q1": Query("q1", "barking dogs"), "q2": Query("q2", "zebra")}, k=10)
    assert next(iter(run["q1"])) == "b"
    assert list(run["q1"].values()) == sorted(run["q1"].values(), reverse=True)
    # a query of unknown words scores every document 0: ties are listed by doc id
    assert list(run["q2"]) == ["a", "b", "c"]
    assert set(run["q2"].values()) == {0.0}


def test_title_is_indexed() -> None:
    retriever = BM25Retriever(show_progress=False)
    retriever.index(TOY)
    assert next(iter(retriever.search({"q": Query("q", "cat")}, k=1)["q"])) == "a"


def test_empty_corpus_and_search_before_index_are_errors() -> None:
    with pytest.raises(RankwiseError, match="empty corpus"):
        BM25Retriever().index({})
    with pytest.raises(RankwiseError, match="before index"):
        BM25Retriever().search({"q": Query("q", "x")})


def test_save_load_round_trip_and_corruption(tmp_path: Path) -> None:
    retriever = BM25Retriever(show_progress=False)
    retriever.index(TOY)
    retriever.save(tmp_path / "idx")
    queries = {"q": Query("q", "postman letters")}
    loaded = load_index(tmp_path / "idx", show_progress=False)
    assert isinstance(loaded, BM25Retriever)
    assert loaded.search(queries) == retriever.search(queries)
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temp dirs left behind

    (tmp_path / "idx" / "doc_ids.json").write_text(json.dumps(["a", "b", "x"]) + "\n")
    with pytest.raises(IndexStoreError, match="checksum mismatch"):
        BM25Retriever.load(tmp_path / "idx")
    with pytest.raises(IndexStoreError, match="not a rankwise index"):
        BM25Retriever.load(tmp_path)


def test_a_dense_index_is_refused_as_bm25(tmp_path: Path) -> None:
    retriever = BM25Retriever(show_progress=False)
    retriever.index(TOY)
    retriever.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["kind"] = "dense"
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="is a 'dense' index, not a 'bm25' index"):
        BM25Retriever.load(tmp_path / "idx")


def test_scifact_bm25_reaches_published_quality(scifact_dir: Path) -> None:
    dataset = load_dataset(scifact_dir, split="test")
    retriever = BM25Retriever(show_progress=False)
    retriever.index(dataset.corpus)
    run = retriever.search(dataset.judged_queries(), k=100)
    scores = evaluate(run, dataset.qrels, ["nDCG@10", "R@100"])
    assert scores["nDCG@10"] >= 0.66  # BEIR paper 0.665, Pyserini 0.679
    assert scores["R@100"] >= 0.90


def test_cranfield_bm25_is_far_above_random(cranfield_dir: Path) -> None:
    dataset = load_dataset(cranfield_dir)
    retriever = BM25Retriever(show_progress=False)
    retriever.index(dataset.corpus)
    scores = evaluate(retriever.search(dataset.judged_queries(), k=100), dataset.qrels, ["nDCG@10"])
    assert scores["nDCG@10"] > 0.35


def test_scores_of_one_query_match_search_for_every_document() -> None:
    retriever = BM25Retriever(show_progress=False)
    retriever.index(TOY)
    searched = retriever.search({"q": Query("q", "the postman barks")}, k=10)["q"]
    assert dict(zip(retriever.doc_ids, retriever.scores("the postman barks"), strict=True)) == searched
    assert retriever.scores("the of and") == [0.0, 0.0, 0.0]  # stopwords only: nothing to match
    with pytest.raises(RankwiseError, match="before index"):
        BM25Retriever(show_progress=False).scores("cats")
