"""Memory figures a child takes around every task, cheaply enough for the hot path.

``rss_kib`` reads ``/proc/self/statm`` through a file descriptor kept open
(one ``pread``, about two microseconds). ``peak_kib`` is the process's lifetime
high-water mark (``getrusage``'s ``ru_maxrss``, about one microsecond). Together
with the bookkeeping a measured run costs about 5 microseconds, so fast tasks are
measured on a sample of their runs (:meth:`TaskTally.measure`).
``uss_kib`` (pages not shared with any other process, i.e. not with the master)
needs ``/proc/self/smaps_rollup``, which costs ~0.1 ms, so it is read only when
RSS is already over a limit: USS can never exceed RSS. Elsewhere psutil answers.

:class:`TaskTally` keeps, per task name, what the child's runs did to its RSS;
the child sends the tally to the master about once a second
(:meth:`TaskTally.flush`) and the master adds it up (:mod:`celeriac.worker.memwatch`).
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable
from typing import Any

import psutil

_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4
#: ru_maxrss is in KiB on Linux, in bytes on macOS
_MAXRSS_DIVISOR = 1024 if sys.platform == "darwin" else 1
#: The first runs of a task in a child fill caches, import lazily and grow the heap once:
#: growth in them is not held against the task.
WARMUP_RUNS = 2


class MemoryProbe:
    """Memory of the calling process, in KiB."""

    def __init__(self) -> None:
        self._pid = 0
        self._statm: int | None = None

    def _fd(self) -> int | None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            try:
                self._statm = os.open("/proc/self/statm", os.O_RDONLY)
            except OSError:
                self._statm = None
        return self._statm

    def rss_kib(self) -> int:
        """Resident set size."""
        fd = self._fd()
        if fd is None:
            return psutil.Process().memory_info().rss // 1024
        return int(os.pread(fd, 64, 0).split(b" ", 2)[1]) * _PAGE_KIB

    @staticmethod
    def anon_kib() -> int:
        """Anonymous resident memory (heap and stacks, not mapped files): what a leak grows.

        RSS also counts pages of mapped files, such as SQLite's memory map of the broker file,
        which come and go with the OS page cache.
        """
        try:
            with open("/proc/self/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"RssAnon:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return psutil.Process().memory_info().rss // 1024

    @staticmethod
    def peak_kib() -> int:
        """The highest RSS this process has had (its high-water mark)."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // _MAXRSS_DIVISOR

    @staticmethod
    def uss_kib() -> int:
        """Unique set size: memory this process alone holds."""
        try:
            with open("/proc/self/smaps_rollup", "rb") as fh:
                total = 0
                for line in fh:
                    if line.startswith((b"Private_Clean:", b"Private_Dirty:", b"Private_Hugetlb:")):
                        total += int(line.split()[1])
                return total
        except OSError:
            return psutil.Process().memory_full_info().uss // 1024

    def over(self, limit_kib: int) -> int | None:
        """The USS if it is above ``limit_kib``, else None (RSS checked first)."""
        return uss_over(limit_kib, self.rss_kib(), self.uss_kib)


def uss_over(limit_kib: int, rss_kib: int, read_uss: Callable[[], int]) -> int | None:
    """The USS if it is above ``limit_kib``, else None. USS can never exceed RSS, so the costly
    USS read (``/proc/<pid>/smaps_rollup``) happens only when RSS is above the limit."""
    if rss_kib <= limit_kib:
        return None
    uss = read_uss()
    return uss if uss > limit_kib else None


# Positions in a tally row (a list, so one run updates it in place without allocating). Runs and
# run time count every run; growth and peak count measured runs only (see TaskTally.measure).
RUNS, RUNTIME, RUNTIME_MAX, GROWTH, GROWTH_MAX, PEAK_RAISE_MAX, LATE_RUNS, LATE_GROWTH, LATE_STEPS = range(9)
LATE_GROWTH_MAX, MEASURED, LATE_MEASURED = 9, 10, 11
ROW_SIZE = 12
#: Row fields that add up when tallies are merged; the rest take the maximum.
SUMMED = frozenset({RUNS, RUNTIME, GROWTH, LATE_RUNS, LATE_GROWTH, LATE_STEPS, MEASURED, LATE_MEASURED})
#: Every run of a task is measured until the child has run it this many times ...
ALWAYS_MEASURED = 16
#: ... then every run of a task that takes at least SLOW_S on average (the readings cost under
#: 1 % of it), and one run in SAMPLE_EVERY of a faster one: a leak shows in a sample as well,
#: at an eighth of the cost.
SLOW_S = 0.001
SAMPLE_EVERY = 8


def empty_row() -> list[Any]:
    """A tally row with nothing counted."""
    return [0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def merge_row(into: list[Any], row: list[Any]) -> None:
    """Add ``row`` (one child's tally since its last report) to ``into``."""
    for i in range(ROW_SIZE):
        into[i] = into[i] + row[i] if i in SUMMED else max(into[i], row[i])


class TaskTally:
    """Child side: per task name, what this child's runs did to its RSS since the last flush."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}
        #: per task name: [runs, seconds] over the child's whole life (warm-up and sampling)
        self.life: dict[str, list[Any]] = {}

    @property
    def busy_s(self) -> float:
        """Seconds spent running tasks over the child's whole life."""
        return sum(runtime for _, runtime in self.life.values())

    def measure(self, header: Any) -> bool:
        """Whether to read memory around the next run of the task ``header`` names.

        A message whose header is not the name it is reported under (a chunk of
        ``Task.chunks``) is always measured.
        """
        life = self.life.get(header) if isinstance(header, str) else None
        if life is None:
            return True
        runs = life[0]
        return runs < ALWAYS_MEASURED or runs % SAMPLE_EVERY == 0 or life[1] >= SLOW_S * runs

    def add(self, name: str, runtime: float, growth: int | None = None, peak_raise: int = 0) -> None:
        """Count one finished run of ``name``; ``growth`` (RSS after minus before) None if not measured."""
        life = self.life.get(name)
        if life is None:
            life = self.life[name] = [0, 0.0]
        life[0] += 1
        life[1] += runtime
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = empty_row()
        row[RUNS] += 1
        row[RUNTIME] += runtime
        row[RUNTIME_MAX] = max(row[RUNTIME_MAX], runtime)
        late = life[0] > WARMUP_RUNS
        if late:
            row[LATE_RUNS] += 1
        if growth is None:
            return
        row[MEASURED] += 1
        row[GROWTH] += growth
        row[GROWTH_MAX] = max(row[GROWTH_MAX], growth)
        row[PEAK_RAISE_MAX] = max(row[PEAK_RAISE_MAX], peak_raise)
        if late:
            row[LATE_MEASURED] += 1
            row[LATE_GROWTH] += growth
            if growth > 0:
                row[LATE_STEPS] += 1
                row[LATE_GROWTH_MAX] = max(row[LATE_GROWTH_MAX], growth)

    def flush(self) -> dict[str, list[Any]]:
        """The rows counted since the last flush, forgetting them."""
        rows, self.rows = self.rows, {}
        return rows
