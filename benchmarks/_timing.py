"""Timing helpers shared by the benchmarks: best-of-n wall time after a warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Minimum wall time of ``fn()`` over ``repeat`` runs, after ``warmup`` untimed runs.

    The minimum, not the mean, because noise on a shared machine only ever adds time.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def best_times(fns: list[Callable[[], object]], repeat: int = 5, warmup: int = 1) -> list[float]:
    """Minimum wall time of each of ``fns`` over ``repeat`` rounds, the calls interleaved.

    For a ratio of two timings: each round runs every function once, so that a slow spell of a
    shared machine (which only ever adds time) falls on both sides of the ratio rather than on
    whichever was timed during it.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def row(name: str, ours: float, baseline_name: str, baseline: float, target: float, **extra):
    """One result row: our time, the baseline's, their ratio and the target ratio."""
    return {
        "name": name,
        "ours_s": ours,
        "baseline": baseline_name,
        "baseline_s": baseline,
        "ratio": ours / baseline,
        "target": target,
        **extra,
    }
