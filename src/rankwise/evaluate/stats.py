"""Paired significance tests over per-query metric values: is system B really better than system A?

Both tests pair the systems query by query (the same query ids, in the same order) and are two-sided:

- :func:`paired_t_test`: Student's paired t-test (``scipy.stats.ttest_rel``). When every difference is equal
  (up to float rounding) the t statistic is undefined; p is then 1.0 if the differences are all zero and 0.0
  otherwise.
- :func:`permutation_test`: the paired randomisation test (Fisher; Smucker et al., CIKM 2007): under the null
  hypothesis each query's difference is as likely to have the other sign, so the p-value is the share of
  sign assignments whose mean difference is at least as far from zero as the observed one. With at most
  ``exact_limit`` non-zero differences every assignment is enumerated (an exact p-value); otherwise
  ``permutations`` random assignments are drawn from a seeded generator and ``p = (hits + 1) / (draws + 1)``
  (never 0, since the observed assignment is one of the possible ones).

:func:`adjust_pvalues` corrects several p-values for multiple comparisons (Bonferroni, Holm).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rankwise.errors import RankwiseError

_TOLERANCE = 1e-12  # relative slack when comparing permuted statistics with the observed one


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise RankwiseError(f"paired tests need two equally long lists of values, got {x.shape} and {y.shape}")
    if x.size < 2:
        raise RankwiseError(f"paired tests need at least 2 paired values, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise RankwiseError("paired tests need finite values (found NaN or infinity)")
    return y - x


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """``(t, p)`` of the two-sided paired t-test of ``b`` against ``a`` (t > 0 when ``b`` is larger)."""
    from scipy import stats

    diff = _differences(a, b)
    if np.ptp(diff) <= _TOLERANCE * max(1.0, float(np.abs(diff).max())):  # equal up to float rounding
        centre = float(np.mean(diff))
        if abs(centre) <= _TOLERANCE:
            return 0.0, 1.0
        return math.copysign(math.inf, centre), 0.0
    result = stats.ttest_rel(b, a)
    return float(result.statistic), float(result.pvalue)


def permutation_test(
    a: Sequence[float],
    b: Sequence[float],
    permutations: int = 10_000,
    seed: int = 0,
    exact_limit: int = 16,
) -> float:
    """Two-sided p-value of the paired randomisation (sign-flip) test of ``b`` against ``a``."""
    diff = _differences(a, b)
    diff = diff[diff != 0]  # a zero difference looks the same with either sign
    if diff.size == 0:
        return 1.0
    observed = abs(diff.sum())
    threshold = observed - _TOLERANCE * max(1.0, observed)
    if diff.size <= exact_limit:
        count = 1 << diff.size
        signs = ((np.arange(count)[:, None] >> np.arange(diff.size)) & 1) * 2 - 1
        sums = np.abs(signs @ diff)
        return float(np.count_nonzero(sums >= threshold) / count)
    if permutations < 1:
        raise RankwiseError(f"permutations must be at least 1, not {permutations}")
    rng = np.random.default_rng(seed)
    hits, done, block = 0, 0, 2048
    while done < permutations:
        size = min(block, permutations - done)
        signs = rng.integers(0, 2, size=(size, diff.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ diff) >= threshold))
        done += size
    return (hits + 1) / (permutations + 1)


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Multiple-comparison adjusted p-values, in input order: ``none``, ``bonferroni`` or ``holm`` (step-down)."""
    values = [float(p) for p in pvalues]
    m = len(values)
    if method == "none":
        return values
    if method == "bonferroni":
        return [min(1.0, p * m) for p in values]
    if method == "holm":
        order = sorted(range(m), key=lambda i: values[i])
        adjusted = [0.0] * m
        running = 0.0
        for rank, index in enumerate(order):
            running = max(running, min(1.0, (m - rank) * values[index]))
            adjusted[index] = running
        return adjusted
    raise RankwiseError(f"unknown p-value correction {method!r}: choose none, bonferroni or holm")


@dataclass(frozen=True)
class PairedComparison:
    """System ``b`` against baseline ``a`` on one metric, over the queries both have."""

    queries: int
    mean_a: float
    mean_b: float
    t: float
    p_t: float
    p_permutation: float
    wins: int
    ties: int
    losses: int

    @property
    def delta(self) -> float:
        return self.mean_b - self.mean_a

    @property
    def relative(self) -> float | None:
        return None if self.mean_a == 0 else self.delta / self.mean_a


def compare_paired(
    a: Mapping[str, float], b: Mapping[str, float], permutations: int = 10_000, seed: int = 0
) -> PairedComparison:
    """Compare per-query values (``{query id: value}``) of ``b`` against ``a`` on their shared queries."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        raise RankwiseError(f"the two systems share {len(shared)} queries; paired tests need at least 2")
    x = [float(a[q]) for q in shared]
    y = [float(b[q]) for q in shared]
    t, p_t = paired_t_test(x, y)
    p_perm = permutation_test(x, y, permutations=permutations, seed=seed)
    wins = sum(1 for u, v in zip(x, y, strict=True) if v > u)
    losses = sum(1 for u, v in zip(x, y, strict=True) if v < u)
    return PairedComparison(
        queries=len(shared),
        mean_a=math.fsum(x) / len(x),
        mean_b=math.fsum(y) / len(y),
        t=t,
        p_t=p_t,
        p_permutation=p_perm,
        wins=wins,
        ties=len(shared) - wins - losses,
        losses=losses,
    )
