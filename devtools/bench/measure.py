"""Time and peak memory of one piece of work, measured inside the process that does it.

Each benchmark stage runs in its own fresh Python process (see runner.py) so that one stage's
allocations never inflate another's peak. Inside it, a sampler thread reads the resident set
size every few milliseconds while the timed function runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil


@dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float  # peak resident memory of the process during the timed work
    delta_rss_mb: float  # peak minus the resident memory just before the work started
    details: dict = field(default_factory=dict)


class _Sampler(threading.Thread):
    def __init__(self, interval_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.interval_s = interval_s
        self.peak = self.proc.memory_info().rss
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval_s)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return max(self.peak, self.proc.memory_info().rss)


def measure(fn: Callable[[], dict | None], repeat: int = 1) -> Measurement:
    """Run ``fn`` ``repeat`` times; report the best time and the peak RSS over all runs."""
    base = psutil.Process().memory_info().rss
    sampler = _Sampler()
    sampler.start()
    best = float("inf")
    details: dict = {}
    try:
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            details = fn() or {}
            best = min(best, time.perf_counter() - t0)
    finally:
        peak = sampler.stop()
    mb = 1024 * 1024
    return Measurement(best, peak / mb, (peak - base) / mb, details)
