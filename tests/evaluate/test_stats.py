"""Paired significance tests: hand-computed toy examples, and agreement with scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rankwise.errors import RankwiseError
from rankwise.evaluate.stats import adjust_pvalues, compare_paired, paired_t_test, permutation_test


def test_t_test_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3) -> t = 2*sqrt(3); with 2 degrees of freedom the two-sided
    # p-value has the closed form 1 - t / sqrt(t^2 + 2) = 1 - sqrt(12/14).
    t, p = paired_t_test([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    assert t == pytest.approx(2 * math.sqrt(3), rel=1e-12)
    assert p == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-9)
    t_reversed, p_reversed = paired_t_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert t_reversed == pytest.approx(-t) and p_reversed == pytest.approx(p)


def test_t_test_matches_scipy():
    rng = np.random.default_rng(7)
    a = rng.random(40)
    b = a + rng.normal(0.05, 0.2, 40)
    t, p = paired_t_test(a, b)
    expected = stats.ttest_rel(b, a)
    assert t == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-12)


def test_t_test_with_constant_differences():
    assert paired_t_test([0.1, 0.5, 0.7], [0.1, 0.5, 0.7]) == (0.0, 1.0)
    t, p = paired_t_test([0.1, 0.5], [0.2, 0.6])
    assert t == math.inf and p == 0.0


def test_permutation_test_by_hand():
    # differences 1, 2, 3: of the 8 sign assignments only (+,+,+) and (-,-,-) reach |sum| >= 6 -> p = 2/8.
    assert permutation_test([0, 0, 0], [1, 2, 3]) == 0.25
    # a zero difference looks the same either way: it changes nothing
    assert permutation_test([0, 0, 0, 5], [1, 2, 3, 5]) == 0.25
    # differences 1, 1, 3: sums of +-1 +-1 +-3 are 5, 3, 1, 1, -1, -1, -3, -5 -> |sum| >= 5 twice -> 2/8
    assert permutation_test([0, 0, 0], [1, 1, 3]) == 0.25
    # differences 1, -1: sums 2, 0, 0, -2; observed 0 -> every assignment is as extreme -> 1.0
    assert permutation_test([0, 1], [1, 0]) == 1.0
    assert permutation_test([0.3, 0.3], [0.3, 0.3]) == 1.0


def test_exact_permutation_test_matches_scipy():
    rng = np.random.default_rng(3)
    a = rng.random(10)
    b = a + rng.normal(0.1, 0.15, 10)
    expected = stats.permutation_test(
        (b, a),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
        vectorized=True,
    )
    assert permutation_test(a, b) == pytest.approx(expected.pvalue, rel=1e-12)


def test_sampled_permutation_test_is_close_to_exact_seeded_and_never_zero():
    rng = np.random.default_rng(11)
    a = rng.random(18)
    b = a + rng.normal(0.05, 0.2, 18)
    exact = permutation_test(a, b, exact_limit=18)
    sampled = permutation_test(a, b, permutations=20_000, seed=1, exact_limit=0)
    assert sampled == pytest.approx(exact, abs=0.01)
    assert permutation_test(a, b, permutations=2_000, seed=5, exact_limit=0) == permutation_test(
        a, b, permutations=2_000, seed=5, exact_limit=0
    )
    far = permutation_test(np.zeros(50), np.ones(50) + np.linspace(0, 1, 50), permutations=500, exact_limit=0)
    assert far == 1 / 501


def test_adjust_pvalues_by_hand():
    p = [0.01, 0.04, 0.03]
    assert adjust_pvalues(p, "none") == p
    assert adjust_pvalues(p, "bonferroni") == pytest.approx([0.03, 0.12, 0.09])
    # Holm: sorted 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept monotone at 0.06
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_pvalues([0.5, 0.9], "bonferroni") == [1.0, 1.0]
    with pytest.raises(RankwiseError, match="unknown p-value correction"):
        adjust_pvalues(p, "fdr")


def test_compare_paired_uses_shared_queries():
    a = {"q1": 0.0, "q2": 0.0, "q3": 0.0, "only-a": 1.0}
    b = {"q1": 1.0, "q2": 2.0, "q3": 0.0, "only-b": 0.0}
    result = compare_paired(a, b)
    assert result.queries == 3
    assert (result.wins, result.ties, result.losses) == (2, 1, 0)
    assert result.mean_a == 0.0 and result.mean_b == 1.0 and result.delta == 1.0
    assert result.relative is None  # baseline mean 0
    assert result.p_permutation == 0.5  # differences 1, 2: |sum| >= 3 in 2 of 4 assignments


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1.0, 2.0], [1.0], "equally long"),
        ([1.0], [2.0], "at least 2"),
        ([1.0, float("nan")], [1.0, 2.0], "finite"),
    ],
)
def test_bad_inputs(a, b, message):
    with pytest.raises(RankwiseError, match=message):
        permutation_test(a, b)
    with pytest.raises(RankwiseError, match=message):
        paired_t_test(a, b)


def test_compare_paired_needs_shared_queries():
    with pytest.raises(RankwiseError, match="share 1 queries"):
        compare_paired({"q1": 1.0, "q2": 0.0}, {"q1": 0.5, "q3": 0.0})
