"""Interleaved timing shared by the benchmarks: every job once per repeat, in a fresh random order each repeat,
so machine-load drift and allocator state hit every job alike."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable


def interleaved(jobs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(median seconds per job, every timing per job)."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name in random.sample(list(jobs), len(jobs)):
            start = time.perf_counter()
            jobs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times
