"""The prefetch window: how many messages a child fetches in one broker round trip.

This module alone computes it (``worker_prefetch_multiplier``, per child):

* ``n >= 1``: a fixed window of *n* messages (1 = fair dispatch for long tasks);
* ``0``: as many as are ready, capped at :data:`UNLIMITED_CAP` per fetch;
* ``"auto"``: sized from what the child measures. With fetch time *f* and mean
  task time *t*, a window of *w* spends ``f / (w·t)`` of the child's time
  fetching; the window is the smallest that keeps this under 5 %
  (``w >= 20·f/t``), but never so large that the last prefetched message waits
  more than :data:`MAX_WAIT_S` behind the others (``w <= 1 + MAX_WAIT_S/t``).
  Long tasks get 1, microsecond tasks get large batches.
"""

from __future__ import annotations

import math

UNLIMITED_CAP = 1000
AUTO_MAX = 256
AUTO_START = 4
MAX_WAIT_S = 0.1
_EWMA = 0.2


class PrefetchWindow:
    """The window of one child; ``observe`` feeds it measurements in auto mode."""

    def __init__(self, multiplier: int | str) -> None:
        self.auto = multiplier == "auto"
        if self.auto:
            self.size = AUTO_START
        elif multiplier == 0:
            self.size = UNLIMITED_CAP
        else:
            assert isinstance(multiplier, int) and multiplier > 0
            self.size = multiplier
        self.mean_task_s: float | None = None
        self.mean_fetch_s: float | None = None

    def describe(self) -> str:
        """For logs and stats: ``4``, ``unlimited`` or ``auto (now 37)``."""
        if self.auto:
            return f"auto (now {self.size})"
        return "unlimited" if self.size == UNLIMITED_CAP else str(self.size)

    @staticmethod
    def _blend(old: float | None, new: float) -> float:
        return new if old is None else old + _EWMA * (new - old)

    def observe(self, fetch_s: float, tasks: int, run_s: float) -> None:
        """Record one batch: fetch time, tasks run, and their total run time."""
        if not self.auto or tasks <= 0:
            return
        self.mean_fetch_s = self._blend(self.mean_fetch_s, fetch_s)
        self.mean_task_s = self._blend(self.mean_task_s, run_s / tasks)
        task_s = max(self.mean_task_s, 1e-6)
        wanted = math.ceil(20 * self.mean_fetch_s / task_s)
        ceiling = 1 + int(MAX_WAIT_S / task_s)
        self.size = max(1, min(AUTO_MAX, wanted, ceiling))
