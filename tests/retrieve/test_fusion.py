"""Fusion checked against values computed by hand, plus the tie-break rule and odd inputs."""

from __future__ import annotations

import copy

import pytest

from rankwise.errors import RankwiseError
from rankwise.retrieve.fusion import FUSERS, fuse, min_max, rrf, weighted

# Run A ranks d1 > d2 > d3; run B ranks d2 > d4 > d1.
RUN_A = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
RUN_B = {"q1": {"d2": 9.0, "d4": 7.0, "d1": 1.0}}


def test_rrf_hand_computed_values_and_order() -> None:
    fused = rrf([RUN_A, RUN_B])  # k = 60
    q1 = fused["q1"]
    # d1: rank 1 in A, rank 3 in B -> 1/61 + 1/63
    assert q1["d1"] == pytest.approx(1 / 61 + 1 / 63, abs=1e-15)
    # d2: rank 2 in A, rank 1 in B -> 1/62 + 1/61
    assert q1["d2"] == pytest.approx(1 / 62 + 1 / 61, abs=1e-15)
    assert q1["d3"] == pytest.approx(1 / 63, abs=1e-15)  # only in A, rank 3
    assert q1["d4"] == pytest.approx(1 / 62, abs=1e-15)  # only in B, rank 2
    # 1/61+1/62 = 0.032531 > 1/61+1/63 = 0.032266 > 1/62 = 0.016129 > 1/63 = 0.015873
    assert list(q1) == ["d2", "d1", "d4", "d3"]


def test_rrf_k_and_weights() -> None:
    q1 = rrf([RUN_A, RUN_B], k=0, weights=[2.0, 1.0])["q1"]
    # k = 0: score = w / rank. d1: 2/1 + 1/3 = 2.3333; d2: 2/2 + 1/1 = 2; d3: 2/3; d4: 1/2
    assert q1["d1"] == pytest.approx(2 + 1 / 3)
    assert q1["d2"] == pytest.approx(2.0)
    assert q1["d3"] == pytest.approx(2 / 3)
    assert q1["d4"] == pytest.approx(0.5)
    assert list(q1) == ["d1", "d2", "d3", "d4"]


def test_rrf_single_run_keeps_its_ranking() -> None:
    fused = rrf([RUN_B])
    assert fused == {"q1": {"d2": 1 / 61, "d4": 1 / 62, "d1": 1 / 63}}
    assert list(fused["q1"]) == ["d2", "d4", "d1"]


def test_tie_broken_by_rank_in_first_run_not_by_doc_id() -> None:
    first = {"q": {"z": 2.0, "y": 1.0}}
    second = {"q": {"a": 2.0, "b": 1.0}}
    q = rrf([first, second])["q"]
    # z and a both score 1/61, y and b both 1/62: equal scores are kept equal ...
    assert q["z"] == q["a"] == 1 / 61
    assert q["y"] == q["b"] == 1 / 62
    # ... and the doc of the first run goes first, although its id sorts later.
    assert list(q) == ["z", "a", "y", "b"]


def test_tie_between_docs_missing_from_first_run_uses_second_run() -> None:
    first = {"q": {"m": 1.0}}
    second = {"q": {"x": 5.0, "w": 4.0}}
    third = {"q": {"w": 5.0, "x": 4.0}}
    q = rrf([first, second, third])["q"]
    # x: 1/61 + 1/62, w: 1/62 + 1/61 (exactly equal: sums are correctly rounded); m: 1/61
    assert q["x"] == q["w"] == pytest.approx(1 / 61 + 1 / 62)
    assert list(q) == ["x", "w", "m"]  # x ranks 1st in the second run; id order would put w first


def test_equal_input_scores_rank_in_dict_order() -> None:
    run = {"q": {"b": 1.0, "a": 1.0, "c": 0.5}}
    q = rrf([run])["q"]
    assert q == {"b": 1 / 61, "a": 1 / 62, "c": 1 / 63}
    assert list(q) == ["b", "a", "c"]


def test_weighted_hand_computed() -> None:
    q1 = weighted([RUN_A, RUN_B])["q1"]
    # A normalised: d1 (3-1)/2 = 1, d2 (2-1)/2 = 0.5, d3 0
    # B normalised: d2 (9-1)/8 = 1, d4 (7-1)/8 = 0.75, d1 0
    # sums: d1 1 + 0 = 1, d2 0.5 + 1 = 1.5, d3 0 (absent from B adds 0), d4 0 + 0.75
    assert q1 == {"d2": 1.5, "d1": 1.0, "d4": 0.75, "d3": 0.0}
    assert list(q1) == ["d2", "d1", "d4", "d3"]


def test_weighted_with_weights_and_tie() -> None:
    q1 = weighted([RUN_A, RUN_B], weights=[2.0, 1.0])["q1"]
    # d1: 2*1 + 1*0 = 2; d2: 2*0.5 + 1*1 = 2 (tie); d4: 0.75; d3: 0
    assert q1 == {"d1": 2.0, "d2": 2.0, "d4": 0.75, "d3": 0.0}
    assert list(q1) == ["d1", "d2", "d4", "d3"]  # d1 ranks 1st in the first run, d2 2nd


def test_min_max_flat_and_single_scores_become_one() -> None:
    assert min_max({"x": 5.0, "y": 5.0}) == {"x": 1.0, "y": 1.0}
    assert min_max({"only": -3.0}) == {"only": 1.0}
    assert min_max({}) == {}
    assert min_max({"a": -2.0, "b": 0.0, "c": 2.0}) == {"a": 0.0, "b": 0.5, "c": 1.0}


def test_query_in_one_run_only_and_query_order() -> None:
    other = {"q2": {"e": 4.0, "f": 2.0}, "q1": {"d3": 1.0}}
    fused = rrf([RUN_A, other])
    assert list(fused) == ["q1", "q2"]  # order of first appearance over the runs
    assert fused["q2"] == {"e": 1 / 61, "f": 1 / 62}
    w = weighted([RUN_A, other])
    assert w["q2"] == {"e": 1.0, "f": 0.0}
    # q1: A normalised d1 1, d2 0.5, d3 0; other's q1 holds only d3 -> 1.0. Sums: d1 1, d3 1, d2 0.5
    assert w["q1"] == {"d1": 1.0, "d3": 1.0, "d2": 0.5}
    assert list(w["q1"]) == ["d1", "d3", "d2"]  # d1 and d3 tie: d1 is 1st in run A, d3 3rd


def test_empty_query_and_depth() -> None:
    fused = rrf([{"q": {}}, {"q": {"a": 1.0, "b": 0.5, "c": 0.1}}], depth=2)
    assert fused == {"q": {"a": 1 / 61, "b": 1 / 62}}
    assert rrf([{"q": {}}]) == {"q": {}}
    assert weighted([{"q": {}}, {}]) == {"q": {}}


def test_inputs_not_mutated() -> None:
    a, b = copy.deepcopy(RUN_A), copy.deepcopy(RUN_B)
    rrf([a, b])
    weighted([a, b])
    assert a == RUN_A and list(a["q1"]) == list(RUN_A["q1"])
    assert b == RUN_B


def test_fuse_table() -> None:
    assert set(FUSERS) == {"rrf", "weighted"}
    assert fuse([RUN_A, RUN_B]) == rrf([RUN_A, RUN_B])
    assert fuse([RUN_A, RUN_B], method="weighted", weights=[2, 1]) == weighted([RUN_A, RUN_B], [2, 1])
    assert fuse([RUN_A, RUN_B], method="rrf", k=10)["q1"]["d3"] == pytest.approx(1 / 13)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rrf([]), "at least one run"),
        (lambda: rrf(RUN_A), "sequence of runs"),  # type: ignore[arg-type]
        (lambda: rrf([RUN_A, RUN_B], weights=[1.0]), "2 runs but 1 weights"),
        (lambda: weighted([RUN_A], weights=[-1.0]), "weight 0"),
        (lambda: rrf([RUN_A], k=-1), "k must be"),
        (lambda: rrf([RUN_A], depth=0), "depth"),
        (lambda: rrf([{"q": {"d": float("nan")}}]), "query 'q', doc 'd'"),
        (lambda: fuse([RUN_A], method="bogus"), "unknown fusion method 'bogus'"),
        (lambda: fuse([RUN_A], method="weighted", k=3), "fusion method 'weighted'"),
    ],
)
def test_bad_arguments_raise(call, message: str) -> None:
    with pytest.raises(RankwiseError, match=message):
        call()
