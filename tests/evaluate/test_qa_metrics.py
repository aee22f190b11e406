"""QA metrics against values computed by hand (each comment shows the arithmetic)."""

from __future__ import annotations

import pytest

from rankwise.evaluate.qa import (
    abstention_scores,
    answer_in_text,
    citation_precision,
    citation_recall,
    exact_match,
    f1_score,
    hotpot_answer_scores,
    joint_scores,
    mean_defined,
    normalize_answer,
    supporting_fact_scores,
)


def test_squad_normalisation() -> None:
    assert normalize_answer("The  Eiffel-Tower, in PARIS!") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # "the" only as a whole word


def test_exact_match_over_several_golds() -> None:
    assert exact_match("the Beatles", ["Rolling Stones", "Beatles"]) == 1.0
    assert exact_match("Beatles band", ["Beatles"]) == 0.0
    with pytest.raises(ValueError):
        exact_match("x", [])


def test_token_f1_hand_computed() -> None:
    # pred "new york city" vs gold "york city": overlap 2; P = 2/3, R = 2/2, F1 = 2*(2/3)*1/(2/3+1) = 0.8
    assert f1_score("New York City", "York City") == pytest.approx(0.8)
    # repeated tokens count with multiplicity: pred "a b b" gold "b b c" -> "a" is an article: pred "b b",
    # overlap 2, P = 1, R = 2/3, F1 = 0.8
    assert f1_score("a b b", "b b c") == pytest.approx(0.8)
    # best over golds: vs "paris" F1 = 2*(1/2)*1/(1/2+1) = 2/3; vs "london" 0
    assert f1_score("Paris France", ["London", "Paris"]) == pytest.approx(2 / 3)
    assert f1_score("", "Paris") == 0.0


def test_hotpot_answer_scores_follow_the_official_yes_no_rule() -> None:
    # "no they are not" vs "no": plain token F1 would be 2*(1/4)*1/(1/4+1) = 0.4, but a yes/no gold that is
    # not matched exactly scores 0 in the official script
    assert hotpot_answer_scores("No, they are not", "no") == {"em": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert hotpot_answer_scores("yes", "no")["f1"] == 0.0
    assert hotpot_answer_scores("Yes.", "yes") == {"em": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0}
    scores = hotpot_answer_scores("Columbus Ohio USA", "Columbus, Ohio")
    # overlap 2, P = 2/3, R = 1, F1 = 0.8
    assert scores == pytest.approx({"em": 0.0, "f1": 0.8, "precision": 2 / 3, "recall": 1.0})


def test_supporting_facts_hand_computed() -> None:
    gold = [("A", 0), ("B", 2)]
    # predicted {(A,0), (B,1), (C,0)}: tp 1, fp 2, fn 1 -> P 1/3, R 1/2, F1 = 2*(1/3)(1/2)/(5/6) = 0.4
    scores = supporting_fact_scores([("A", 0), ("B", 1), ("C", 0), ("A", 0)], gold)
    assert scores == pytest.approx({"em": 0.0, "precision": 1 / 3, "recall": 0.5, "f1": 0.4})
    assert supporting_fact_scores(gold, gold) == {"em": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert supporting_fact_scores([], gold) == {"em": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    # paragraph level: titles
    assert supporting_fact_scores(["A"], ["A", "B"]) == pytest.approx(
        {"em": 0.0, "precision": 1.0, "recall": 0.5, "f1": 2 / 3}
    )


def test_joint_scores_hand_computed() -> None:
    answer = {"em": 1.0, "precision": 0.5, "recall": 1.0}
    support = {"em": 0.0, "precision": 1.0, "recall": 0.5}
    # joint P = 0.5*1 = 0.5, joint R = 1*0.5 = 0.5, F1 = 0.5, EM = 1*0 = 0
    assert joint_scores(answer, support) == {"em": 0.0, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    zero = {"em": 0.0, "precision": 0.0, "recall": 0.0}
    assert joint_scores(zero, support)["f1"] == 0.0


def test_citation_precision_and_recall() -> None:
    assert citation_precision(["a", "b", "b", "c"], ["a", "x"]) == pytest.approx(1 / 3)  # {a,b,c}: 1 gold
    assert citation_precision([], ["a"]) is None
    assert citation_recall(["a", "b"], ["a", "x"]) == 0.5
    assert citation_recall(["a"], []) is None


def test_answer_in_text() -> None:
    assert answer_in_text("Columbus, Ohio", "based in Columbus, Ohio since 2005")
    assert not answer_in_text("Ohio", "Ohioans live here")  # whole tokens only
    assert not answer_in_text("yes", "yes it is")  # yes/no never count
    assert answer_in_text(["nope", "the spirit"], "a vengeful spirit")


def test_abstention_scores_hand_computed() -> None:
    abstained = [True, False, False, True, True, False]
    answerable = [True, True, True, False, False, False]
    scores = abstention_scores(abstained, answerable)
    # answerable: 1 of 3 abstained; unanswerable: 2 of 3; all: 3 of 6
    assert scores["abstention_rate"] == 0.5
    assert scores["abstention_rate_answerable"] == pytest.approx(1 / 3)
    assert scores["abstention_rate_unanswerable"] == pytest.approx(2 / 3)
    assert scores["abstention_gap"] == pytest.approx(1 / 3)
    assert scores["abstention_precision"] == pytest.approx(2 / 3)  # 2 of the 3 abstentions were right to
    # correct: answerable & answered (2) + unanswerable & abstained (2) = 4 of 6
    assert scores["answerability_accuracy"] == pytest.approx(4 / 6)


def test_abstention_scores_edge_cases() -> None:
    scores = abstention_scores([False, False], [True, True])
    assert scores["abstention_rate_unanswerable"] is None and scores["abstention_gap"] is None
    assert scores["abstention_precision"] is None
    with pytest.raises(ValueError):
        abstention_scores([True], [])


def test_mean_defined() -> None:
    assert mean_defined([1.0, None, 0.0]) == (0.5, 2)
    assert mean_defined([None]) == (None, 0)
