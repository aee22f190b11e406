"""Answer recall@k (DPR's top-k retrieval accuracy), checked against hand-worked cases."""

from __future__ import annotations

import pytest

from rankwise.evaluate.qa import answer_recall, parse_answer_recall

TEXTS = {"d1": "The Nile is the longest river.", "d2": "Paris, France's capital.", "d3": "The U.S.A. flag."}


def test_a_gold_answer_in_the_top_k_after_squad_normalisation_counts():
    ranked = {"q1": ["d1", "d2"], "q2": ["d1", "d2"], "q3": ["d3"], "q4": []}
    answers = {"q1": ["paris"], "q2": ["Rome", "THE NILE"], "q3": ["usa"], "q4": ["x"], "q5": ["y"]}
    at1 = answer_recall(ranked, answers, 1, TEXTS.__getitem__)
    at2 = answer_recall(ranked, answers, 2, TEXTS.__getitem__)
    # q1: Paris is 2nd; q2: "the nile" normalises to "nile" in d1; q3: "U.S.A." -> "usa"; q4/q5 retrieved nothing
    assert at1 == {"q1": 0.0, "q2": 1.0, "q3": 1.0, "q4": 0.0, "q5": 0.0}
    assert at2 == {**at1, "q1": 1.0}


def test_a_partial_token_is_not_a_match_and_k_must_be_positive():
    assert answer_recall({"q": ["d1"]}, {"q": ["Nil"]}, 5, TEXTS.__getitem__) == {"q": 0.0}
    with pytest.raises(ValueError, match="k must be at least 1"):
        answer_recall({}, {}, 0, TEXTS.__getitem__)


def test_metric_names():
    assert parse_answer_recall("AnswerRecall@20") == 20
    assert parse_answer_recall("AnswerRecall@0") is None and parse_answer_recall("R@20") is None
