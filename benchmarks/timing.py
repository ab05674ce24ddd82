"""Timing helper shared by the benchmarks (no service imports: it runs on a bare GPU
machine too)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(run: Callable[[], object], repeat: int) -> float:
    """The shortest of ``repeat`` wall-clock times of ``run()`` (s)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
