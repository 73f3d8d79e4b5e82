"""The master's view of memory: samples, per-task growth, leaks, and what recycling costs.

Four parts, each small enough to test alone:

* :class:`TaskBook` adds up the tallies children send (per task name: runs, run
  time, RSS kept per run, peak raised) and gives each task a verdict: a *leak*
  keeps memory run after run once warmed up; a *high-water mark* raises the
  child's memory once (a big task) and then stays flat.
* :class:`Trend` watches the master's own anonymous memory (its heap: RSS without
  mapped files, whose pages come and go with the page cache). The master runs no task code and
  keeps only bounded state, so steady growth there is a bug in celeriac or in a
  master-side extension, never in a task.
* :class:`StartCost` measures how long a new child takes to be ready and what
  share of a child's time recycling eats; it warns once, with numbers.
* :class:`MemoryWatch` samples RSS and USS of the master and every child with
  psutil at ``worker_memory_interval`` (the children's hot path is not touched),
  and finds a child over ``worker_max_memory_per_child_hard``.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from celeriac.observe.records import ExitReason, MemoryReport, TaskMemory, Verdict
from celeriac.worker.memory import (
    GROWTH,
    GROWTH_MAX,
    LATE_GROWTH,
    LATE_GROWTH_MAX,
    LATE_MEASURED,
    LATE_RUNS,
    LATE_STEPS,
    MEASURED,
    PEAK_RAISE_MAX,
    RUNS,
    RUNTIME,
    RUNTIME_MAX,
    WARMUP_RUNS,
    MemoryProbe,
    empty_row,
    merge_row,
    uss_over,
)

#: A task is called leaking once it kept at least this much after warm-up ...
LEAK_MIN_KIB = 4096
#: ... in at least this many separate runs, none of them more than half of it (a steady climb,
#: not one jump).
LEAK_MIN_STEPS = 3
#: Runs after warm-up (per child, added up) needed before a task is judged at all.
MIN_LATE_RUNS = 3
#: A run that raised the child's peak or kept at least this much is a high-water mark (smaller
#: steps are the allocator's own: CPython takes memory in arenas of 1 MiB).
HIGH_WATER_MIN_KIB = 4096
#: Recycling that takes more than this share of a child's time gets a warning.
RECYCLE_COST_WARN = 0.10
#: Recycles looked at for the cost (the most recent ones).
RECENT_RECYCLES = 20
RECENT_STARTS = 50
#: The master's RSS: ignored for this long after start (imports, first connections), then
#: watched over a window of this length, in this many points.
TREND_WARMUP_S = 60.0
TREND_WINDOW_S = 900.0
TREND_POINTS = 90
#: Growth over the whole window, at least, before the master is called growing.
TREND_MIN_KIB = 1024
#: Task names in a heartbeat's memory report, at most (leaks and high-water marks first).
REPORTED_TASKS = 50


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB" if abs(kib) >= 1024 else f"{kib:.0f} KiB"


def late_growth(row: Sequence[Any]) -> float:
    """Memory kept by the runs after warm-up, in KiB: measured, and scaled up for the runs of a
    fast task that were not measured (see :meth:`TaskTally.measure`)."""
    measured = row[LATE_MEASURED]
    return row[LATE_GROWTH] * row[LATE_RUNS] / measured if measured else 0.0


def verdict(row: Sequence[Any]) -> tuple[Verdict, str]:
    """Leak, high-water mark, flat, or too few runs to tell, with the figures behind it."""
    measured, steps = row[LATE_MEASURED], row[LATE_STEPS]
    kept, late_runs = late_growth(row), row[LATE_RUNS]
    if (
        measured >= MIN_LATE_RUNS
        and kept >= LEAK_MIN_KIB
        and steps >= LEAK_MIN_STEPS
        and row[LATE_GROWTH_MAX] * 2 <= row[LATE_GROWTH]
    ):
        sampled = " measured" if measured < late_runs else ""
        return Verdict.LEAK, (
            f"kept {_mib(kept)} after warm-up ({_mib(kept / late_runs)} per run, growing in "
            f"{steps} of {measured}{sampled} runs): memory it does not give back"
        )
    raised = max(row[PEAK_RAISE_MAX], row[GROWTH_MAX])
    if measured < MIN_LATE_RUNS:
        if raised >= HIGH_WATER_MIN_KIB:
            return Verdict.TOO_FEW_RUNS, (
                f"raised a child's memory by up to {_mib(raised)} in one run; a leak cannot be told "
                f"from a high-water mark until a child has run it more than {WARMUP_RUNS + MIN_LATE_RUNS} "
                "times"
            )
        return Verdict.FLAT, "no growth seen"
    if raised >= HIGH_WATER_MIN_KIB:
        later = (
            f"kept {_mib(kept)} over {late_runs} later runs"
            if kept > 0
            else f"kept nothing over {late_runs} later runs"
        )
        return Verdict.HIGH_WATER, (
            f"raised the child's peak by up to {_mib(row[PEAK_RAISE_MAX])} and kept at most "
            f"{_mib(row[GROWTH_MAX])} in one run, then {later}: a high-water mark, not a leak"
        )
    return Verdict.FLAT, f"{_mib(kept)} over {late_runs} runs after warm-up"


class TaskBook:
    """Per task name, the sum of every child's tallies and the recycles it caused."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}
        self.recycles: dict[str, int] = {}
        self.hard_kills: dict[str, int] = {}

    def merge(self, rows: dict[str, list[Any]]) -> None:
        """Add a child's report (a :meth:`TaskTally.flush`)."""
        for name, row in rows.items():
            if not isinstance(name, str) or not isinstance(row, list) or len(row) != len(empty_row()):
                continue
            merge_row(self.rows.setdefault(name, empty_row()), row)

    def recycled_after(self, name: str) -> None:
        """``name`` was the last task before a child went over worker_max_memory_per_child."""
        self.recycles[name] = self.recycles.get(name, 0) + 1

    def killed_during(self, name: str) -> None:
        """A child went over worker_max_memory_per_child_hard while running ``name``."""
        self.hard_kills[name] = self.hard_kills.get(name, 0) + 1

    def report(self) -> list[TaskMemory]:
        """One record per task name, leaks first, then by memory kept."""
        out = []
        for name in set(self.rows) | set(self.recycles) | set(self.hard_kills):
            row = self.rows.get(name) or empty_row()
            runs, measured = row[RUNS], row[MEASURED]
            judged, why = verdict(row)
            out.append(
                TaskMemory(
                    name=name,
                    runs=runs,
                    runtime_mean_s=row[RUNTIME] / runs if runs else 0.0,
                    runtime_max_s=row[RUNTIME_MAX],
                    measured_runs=measured,
                    growth_mean_kib=row[GROWTH] / measured if measured else 0.0,
                    growth_max_kib=row[GROWTH_MAX],
                    growth_total_kib=round(row[GROWTH] * runs / measured) if measured else 0,
                    peak_raise_max_kib=row[PEAK_RAISE_MAX],
                    late_runs=row[LATE_RUNS],
                    late_growth_kib=round(late_growth(row)),
                    late_steps=row[LATE_STEPS],
                    recycles=self.recycles.get(name, 0),
                    hard_kills=self.hard_kills.get(name, 0),
                    verdict=judged,
                    why=why,
                )
            )
        rank = {Verdict.LEAK: 0, Verdict.HIGH_WATER: 1, Verdict.TOO_FEW_RUNS: 2, Verdict.FLAT: 3}
        out.sort(key=lambda t: (rank[t.verdict], -t.growth_total_kib, t.name))
        return out


def theil_sen(points: Sequence[tuple[float, float]]) -> float:
    """The median of the slopes between every pair of points (robust to outliers)."""
    slopes = [
        (y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 > x1
    ]
    return statistics.median(slopes) if slopes else 0.0


class Trend:
    """Is the master's RSS growing steadily? (A single step up, or noise, is not growth.)"""

    def __init__(
        self,
        warmup_s: float = TREND_WARMUP_S,
        window_s: float = TREND_WINDOW_S,
        points: int = TREND_POINTS,
        min_kib: float = TREND_MIN_KIB,
    ) -> None:
        self.warmup_s = warmup_s
        self.window_s = window_s
        self.every_s = window_s / points
        self.min_kib = min_kib
        self.samples: deque[tuple[float, float]] = deque(maxlen=points)
        self._started: float | None = None

    def add(self, at: float, kib: float) -> None:
        """A sample taken at monotonic time ``at``; kept at most every window/points seconds."""
        if self._started is None:
            self._started = at
        if at - self._started < self.warmup_s:
            return
        if self.samples and at - self.samples[-1][0] < self.every_s:
            return
        self.samples.append((at, kib))

    @property
    def span_s(self) -> float:
        """Seconds between the oldest and newest sample kept."""
        return self.samples[-1][0] - self.samples[0][0] if len(self.samples) > 1 else 0.0

    def per_hour(self) -> float | None:
        """KiB per hour over the window, once it holds at least a third of a window."""
        if self.span_s < self.window_s / 3:
            return None
        return theil_sen(list(self.samples)) * 3600.0

    def growing(self) -> bool:
        """Up by ``min_kib`` over a full window, with every third of it going up.

        A one-off step up (a bigger batch, a reconnect) sits in one third; a leak
        climbs in all three.
        """
        if self.span_s < self.window_s * 0.9:
            return False
        samples = list(self.samples)
        third = len(samples) // 3
        parts = [samples[:third], samples[third : 2 * third], samples[2 * third :]]
        if any(theil_sen(part) <= 0 for part in parts):
            return False
        first = statistics.median(kib for _, kib in parts[0])
        last = statistics.median(kib for _, kib in parts[2])
        return last - first >= self.min_kib


@dataclass(frozen=True, slots=True)
class Life:
    """One recycled child: how long it took to start, and how long it ran tasks."""

    start_s: float
    busy_s: float
    tasks: int
    reason: ExitReason


class StartCost:
    """What it costs to replace children: start times and the share of capacity lost."""

    def __init__(self) -> None:
        self.starts: deque[float] = deque(maxlen=RECENT_STARTS)
        self.count = 0
        self.lives: deque[Life] = deque(maxlen=RECENT_RECYCLES)
        self.warned = False

    def started(self, seconds: float) -> None:
        """A child became ready ``seconds`` after fork."""
        self.starts.append(seconds)
        self.count += 1

    def recycled(self, life: Life) -> None:
        """A child was replaced for its task count or memory."""
        self.lives.append(life)

    def median_s(self) -> float | None:
        """Median time from fork to ready, over recent starts."""
        return statistics.median(self.starts) if self.starts else None

    def cost(self) -> float | None:
        """Share of recycled children's time spent starting (0..1), over recent recycles."""
        if not self.lives:
            return None
        start = sum(life.start_s for life in self.lives)
        busy = sum(life.busy_s for life in self.lives)
        return start / (start + busy) if start + busy > 0 else None

    def warning(self, max_tasks: int | None, max_memory: int | None) -> str | None:
        """A warning, the first time recycling costs more than 10 % of capacity (else None)."""
        cost = self.cost()
        if self.warned or cost is None or len(self.lives) < 3 or cost <= RECYCLE_COST_WARN:
            return None
        self.warned = True
        lives = list(self.lives)
        start = statistics.median(life.start_s for life in lives)
        tasks = sum(life.tasks for life in lives)
        per_life = tasks / len(lives)
        task_s = sum(life.busy_s for life in lives) / tasks if tasks else 0.0
        per_minute = 60.0 * per_life / (start + per_life * task_s)
        message = (
            f"recycling costs {cost:.0%} of child capacity: a new child takes {start:.2f} s to be ready "
            f"(median of {len(lives)}) and runs {per_life:.1f} tasks of {task_s * 1000:.1f} ms before "
            f"it is replaced, so a child can run at most {per_minute:.0f} tasks a minute. "
        )
        by_memory = sum(life.reason is ExitReason.MAX_MEMORY for life in lives)
        if by_memory * 2 > len(lives):
            return message + (
                f"Children are replaced for memory (worker_max_memory_per_child={max_memory} KiB): "
                "raise it, or fix the task that grows them (`celeriac inspect memory` names it)."
            )
        suggest = math.ceil((1 - RECYCLE_COST_WARN) / RECYCLE_COST_WARN * start / task_s) if task_s else None
        fix = (
            f"Set worker_max_tasks_per_child to at least {suggest} (now {max_tasks}) to keep it under "
            f"{RECYCLE_COST_WARN:.0%}"
            if suggest
            else "Raise worker_max_tasks_per_child"
        )
        return message + (
            f"{fix}, or make children start faster (import task modules in the master through "
            "include/imports, and keep work out of after_child_start)."
        )


@dataclass(slots=True)
class Sample:
    """The latest memory reading of one child, and the highest RSS seen."""

    rss_kib: int | None = None
    uss_kib: int | None = None
    peak_rss_kib: int | None = None


class MemoryWatch:
    """The master's memory bookkeeping: samples, the task book, the trend and start costs."""

    def __init__(
        self,
        interval_s: float,
        max_tasks: int | None,
        max_memory_kib: int | None,
        hard_kib: int | None,
    ) -> None:
        self.interval_s = interval_s
        self.max_tasks = max_tasks
        self.max_memory_kib = max_memory_kib
        self.hard_kib = hard_kib
        self.probe = MemoryProbe()
        self.book = TaskBook()
        self.trend = Trend()
        self.starts = StartCost()
        self.children: dict[int, Sample] = {}
        self.master_uss_kib: int | None = None
        self.master_anon_kib: int | None = None
        self.trend_warned = False
        #: warnings given so far (each once), for the heartbeat
        self.warnings: list[str] = []
        self._next = 0.0

    def due(self, now: float) -> bool:
        """True once every ``interval_s``."""
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True

    def sample(self, now: float, processes: Iterable[tuple[int, psutil.Process | None]]) -> str | None:
        """Read the master and every child; returns a warning when the master keeps growing."""
        self.master_anon_kib = self.probe.anon_kib()
        self.trend.add(now, self.master_anon_kib)
        self.master_uss_kib = self.probe.uss_kib()
        alive = set()
        for pid, process in processes:
            alive.add(pid)
            reading = self.children.setdefault(pid, Sample())
            if process is None:
                continue
            try:
                info = process.memory_full_info()
            except (psutil.Error, OSError):
                continue
            reading.rss_kib = info.rss // 1024
            reading.uss_kib = getattr(info, "uss", 0) // 1024 or None
            reading.peak_rss_kib = max(reading.peak_rss_kib or 0, reading.rss_kib)
        for pid in set(self.children) - alive:
            del self.children[pid]
        if self.trend_warned or not self.trend.growing():
            return None
        self.trend_warned = True
        rate = self.trend.per_hour() or 0.0
        return self.warned(
            f"the worker's master process keeps growing: its heap by {_mib(rate)} an hour over the last "
            f"{self.trend.span_s / 60:.0f} min, in every part of that time. The master runs no task "
            "code, so this points at celeriac itself or at a master-side extension (hooks, on_heartbeat); "
            "`celeriac inspect memory --json` shows the figures"
        )

    def warned(self, message: str) -> str:
        """Keep ``message`` for the heartbeat and return it."""
        self.warnings.append(message)
        return message

    def recycled(self, life: Life) -> str | None:
        """A child was replaced for its task count or memory; a warning if that costs too much."""
        self.starts.recycled(life)
        message = self.starts.warning(self.max_tasks, self.max_memory_kib)
        return None if message is None else self.warned(message)

    def over_hard_limit(self, process: psutil.Process | None) -> int | None:
        """The child's USS in KiB if it is above worker_max_memory_per_child_hard (else None).

        RSS (one small read) is checked first; USS is read only above the limit.
        """
        if self.hard_kib is None or process is None:
            return None
        try:
            return uss_over(
                self.hard_kib,
                process.memory_info().rss // 1024,
                lambda: getattr(process.memory_full_info(), "uss", 0) // 1024,
            )
        except (psutil.Error, OSError):
            return None

    def report(self) -> MemoryReport:
        """The memory part of the node's heartbeat."""
        per_hour = self.trend.per_hour()
        tasks = self.book.report()
        return MemoryReport(
            master_uss_kib=self.master_uss_kib,
            master_anon_kib=self.master_anon_kib,
            master_trend_kib_per_hour=None if per_hour is None else round(per_hour, 1),
            master_growing=self.trend_warned,
            master_window_s=round(self.trend.span_s, 1),
            starts=self.starts.count,
            start_median_s=self.starts.median_s(),
            start_max_s=max(self.starts.starts, default=None),
            recycle_cost=self.starts.cost(),
            max_tasks_per_child=self.max_tasks,
            max_memory_per_child_kib=self.max_memory_kib,
            max_memory_per_child_hard_kib=self.hard_kib,
            tasks=tasks[:REPORTED_TASKS],
            warnings=list(self.warnings),
            tasks_omitted=max(0, len(tasks) - REPORTED_TASKS),
        )
