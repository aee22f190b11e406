"""Timing shared by the benchmark scripts (a sibling module: they run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(repeats: int, *fns: Callable[[], object]) -> list[float]:
    """Best time of each function, the functions alternating so that load changes hit all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best
