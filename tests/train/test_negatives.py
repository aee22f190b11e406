"""Hard-negative mining: rank window, relevant docs skipped, 1:N, seeded; JSONL round trip and errors."""

from __future__ import annotations

import json

import pytest

from rankwise.errors import DataError, RankwiseError
from rankwise.rerank.windows import passage_windows
from rankwise.train.negatives import bm25_windows, mine_negatives, read_examples, write_examples
from rankwise.types import Document, Query

CORPUS = {f"d{i}": Document(f"d{i}", f"T{i}", f"text {i}") for i in range(1, 21)}
QUERIES = {"q1": Query("q1", "first"), "q2": Query("q2", "second"), "q3": Query("q3", "third")}
# q1 ranks d1..d20 (score 20..1); d3 and d7 are relevant, d5 judged non-relevant (grade 0).
RUN = {
    "q1": {f"d{i}": float(21 - i) for i in range(1, 21)},
    "q2": {"d1": 2.0, "d2": 1.0},
}
QRELS = {"q1": {"d3": 1, "d7": 2, "d5": 0}, "q2": {"d1": 1}, "q3": {"d4": 1}}


def test_window_ratio_and_skipping_relevant():
    mined = mine_negatives(QUERIES, RUN, QRELS, CORPUS, num_negatives=3, window=(2, 8), seed=1)
    q1 = [ex for ex in mined.examples if ex.query_id == "q1"]
    assert [ex.positive_id for ex in q1] == ["d3", "d7"]  # one example per relevant doc, grade 0 is not one
    for ex in q1:
        assert len(ex.negative_ids) == 3
        # ranks 2..8 are d2..d8; d3 and d7 are relevant, so candidates are d2, d4, d5, d6, d8.
        assert set(ex.negative_ids) <= {"d2", "d4", "d5", "d6", "d8"}
        assert list(ex.negative_ids) == sorted(ex.negative_ids, key=lambda d: int(d[1:]))  # run order kept
        assert ex.negatives == tuple(CORPUS[d].contents for d in ex.negative_ids)
        assert ex.positive == CORPUS[ex.positive_id].contents and ex.query == "first"


def test_seeded_and_independent_of_other_queries():
    a = mine_negatives(QUERIES, RUN, QRELS, CORPUS, num_negatives=2, window=(1, 20), seed=7)
    b = mine_negatives(QUERIES, RUN, QRELS, CORPUS, num_negatives=2, window=(1, 20), seed=7)
    only_q1 = mine_negatives(QUERIES, RUN, {"q1": QRELS["q1"]}, CORPUS, num_negatives=2, window=(1, 20), seed=7)
    assert a.examples == b.examples
    assert [ex for ex in a.examples if ex.query_id == "q1"] == only_q1.examples
    draws = {
        mine_negatives(QUERIES, RUN, QRELS, CORPUS, num_negatives=2, window=(1, 20), seed=s).examples[0].negative_ids
        for s in range(10)
    }
    assert len(draws) > 1  # the seed matters


def test_short_windows_and_skips_are_reported():
    mined = mine_negatives(QUERIES, RUN, QRELS, CORPUS, num_negatives=2, window=(2, 5))
    # q2's window (ranks 2..5) holds only d2; q3 has no run at all.
    q2 = [ex for ex in mined.examples if ex.query_id == "q2"]
    assert len(q2) == 1 and q2[0].negative_ids == ("d2",)
    text = " | ".join(mined.warnings)
    assert "1 queries skipped (not in run)" in text and "'q3'" in text
    assert "fewer than 2 negatives" in text
    empty = mine_negatives(QUERIES, RUN, {"q2": {"d1": 1}}, CORPUS, window=(3, 10))
    assert empty.examples == [] and "no negative in window" in empty.warnings[0]


def test_bad_arguments():
    with pytest.raises(RankwiseError, match="start <= end"):
        mine_negatives(QUERIES, RUN, QRELS, CORPUS, window=(10, 5))
    with pytest.raises(RankwiseError, match="at least 1"):
        mine_negatives(QUERIES, RUN, QRELS, CORPUS, num_negatives=0)


def test_jsonl_round_trip(tmp_path):
    examples = mine_negatives(QUERIES, RUN, QRELS, CORPUS, num_negatives=2, window=(1, 10)).examples
    path = tmp_path / "sub" / "examples.jsonl"
    assert write_examples(examples, path) == len(examples)
    assert read_examples(path) == examples
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"query_id", "query", "positive_id", "positive", "negative_ids", "negatives"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"query_id": 1}', "'query_id' must be a string"),
        (
            '{"query_id": "q", "query": "x", "positive_id": "d", "positive": "p", "negative_ids": ["a"], '
            '"negatives": []}',
            "differ in length",
        ),
        (
            '{"query_id": "q", "query": "x", "positive_id": "d", "positive": "p", "negative_ids": [], '
            '"negatives": [], "score": 1}',
            "unknown field 'score'",
        ),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad.jsonl"
    good = '{"query_id": "q", "query": "x", "positive_id": "d", "positive": "p", "negative_ids": [], "negatives": []}'
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(DataError, match=problem) as info:
        read_examples(path)
    assert info.value.line == 3 and str(path) in str(info.value)


def test_bm25_windows_keep_the_window_that_matches_the_query():
    words = [f"w{i}" for i in range(200)]
    corpus = {
        # "kinase" is word 130: past the first 70 words, inside window 2 (words 120-189)
        "late": Document("late", "Title", " ".join([*words[:130], "kinase", *words[130:]])),
        "early": Document("early", "Kinase", " ".join(words)),  # the title matches: every window has it
        "none": Document("none", "", " ".join(words)),  # matches nowhere
    }
    run = {"q": {"late": 3.0, "early": 2.0, "none": 1.0}}
    mined = mine_negatives({"q": Query("q", "kinase")}, run, {"q": {"late": 1}}, corpus, num_negatives=2, window=(1, 3))
    (example,) = bm25_windows(mined.examples, corpus, words=70, stride=60)
    windows = passage_windows(corpus["late"], 70, 60)
    assert example.positive == windows[2] and windows[2].startswith("Title w120") and "kinase" in windows[2]
    # equally good windows: the earliest, which is the plain contents; so is a document that matches nowhere
    assert example.negatives == (corpus["early"].contents, corpus["none"].contents)
    assert (example.query, example.positive_id, example.negative_ids) == ("kinase", "late", ("early", "none"))


def test_bm25_windows_refuse_documents_missing_from_the_corpus():
    mined = mine_negatives(QUERIES, RUN, QRELS, CORPUS, num_negatives=1, window=(2, 8), seed=1)
    with pytest.raises(RankwiseError, match="not in the corpus"):
        bm25_windows(mined.examples, {k: v for k, v in CORPUS.items() if k != "d3"})
