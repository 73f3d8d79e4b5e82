"""Typed records of what a worker node does; every output shows these same numbers.

The master builds a :class:`WorkerStats` every ``worker_stats_interval`` and
publishes it as the node's heartbeat (JSON). ``celeriac inspect``, the demo
summary and the monitor read it back with :meth:`WorkerStats.from_json`.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

#: Upper bounds (seconds) of the run-time histogram buckets; one more bucket counts the rest.
RUNTIME_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class ExitReason(enum.StrEnum):
    """Why a child process ended."""

    MAX_TASKS = "max-tasks"
    MAX_MEMORY = "max-memory"
    MAX_MEMORY_HARD = "max-memory-hard"
    SHUTDOWN = "shutdown"
    HARD_TIME_LIMIT = "hard-time-limit"
    START_TIMEOUT = "start-timeout"
    CRASHED = "crashed"
    KILLED = "killed"
    ORPHANED = "orphaned"


@dataclass(slots=True)
class ChildStats:
    """One child process as the master sees it."""

    index: int
    pid: int
    started_at: float
    ready_s: float | None = None
    tasks: int = 0
    failed: int = 0
    running: str | None = None
    running_for_s: float | None = None
    rss_kib: int | None = None
    uss_kib: int | None = None
    #: the highest RSS the master sampled for this child
    peak_rss_kib: int | None = None
    #: the child's prefetch window as last reported (messages it may hold)
    prefetch: int | None = None


@dataclass(slots=True)
class SlotCounts:
    """Runs finished in one child slot (by its successive children), as of the slot's last count.

    ``finished`` only grows over the node's life, and ``at`` is the wall-clock time the
    count is true for: the time of the child's last report, or of the heartbeat while the
    slot has no child. Two counts of one slot give its exact rate over the time between
    them, whenever the heartbeats carrying them were read.
    """

    index: int
    at: float
    #: per queue: runs finished, any outcome
    finished: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class ChildExit:
    """A child that ended, with the reason the master recorded."""

    index: int
    pid: int
    reason: ExitReason
    detail: str
    tasks: int
    lifetime_s: float
    at: float


class Verdict(enum.StrEnum):
    """What a task's runs do to the memory of the child running them."""

    LEAK = "leak"
    HIGH_WATER = "high-water"
    FLAT = "flat"
    TOO_FEW_RUNS = "too-few-runs"


@dataclass(slots=True)
class TaskMemory:
    """Per task name: run time and what its runs did to the child's resident memory (KiB)."""

    name: str
    runs: int
    runtime_mean_s: float
    runtime_max_s: float
    #: runs whose memory was read (every run of a slow task; a sample of a fast one's)
    measured_runs: int
    #: RSS after the run minus RSS before it: memory the run kept (totals scaled to all runs)
    growth_mean_kib: float
    growth_max_kib: int
    growth_total_kib: int
    #: how far the run pushed the child's peak RSS (its high-water mark)
    peak_raise_max_kib: int
    #: runs after each child's first runs of this task (warm-up), and what they kept
    late_runs: int
    late_growth_kib: int
    late_steps: int
    #: times this task was the one after which a child went over worker_max_memory_per_child
    recycles: int
    #: times a child was killed over worker_max_memory_per_child_hard while running it
    hard_kills: int
    verdict: Verdict
    why: str


@dataclass(slots=True)
class TaskRuns:
    """Runs of one task name from one queue over a node's life: outcomes and run times."""

    queue: str
    task: str
    succeeded: int
    failed: int
    retried: int
    #: rejected, revoked, expired or ignored
    other: int
    runtime_sum_s: float
    #: runs per run-time bucket (:data:`RUNTIME_BUCKETS`, then the rest); not cumulative
    buckets: list[int]

    @property
    def finished(self) -> int:
        """Runs that left the queue, whatever their outcome."""
        return self.succeeded + self.failed + self.retried + self.other


@dataclass(slots=True)
class MemoryReport:
    """A worker node's memory: master trend, child starts, recycling cost, per-task growth."""

    master_uss_kib: int | None
    #: the master's anonymous resident memory (heap; RSS without mapped files)
    master_anon_kib: int | None
    #: robust (Theil-Sen) trend of the master's anonymous memory; None until warmed up
    master_trend_kib_per_hour: float | None
    master_growing: bool
    master_window_s: float
    #: child starts: fork to ready
    starts: int
    start_median_s: float | None
    start_max_s: float | None
    #: share of child time spent starting replacements, over recent recycles
    recycle_cost: float | None
    max_tasks_per_child: int | None
    max_memory_per_child_kib: int | None
    max_memory_per_child_hard_kib: int | None
    tasks: list[TaskMemory] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: task names left out of ``tasks`` to keep the heartbeat small (the least remarkable ones)
    tasks_omitted: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryReport:
        """Decode the ``memory`` part of a heartbeat."""
        tasks = [TaskMemory(**{**t, "verdict": Verdict(t["verdict"])}) for t in data.get("tasks", [])]
        return cls(**{**data, "tasks": tasks})


@dataclass(slots=True)
class WorkerStats:
    """A worker node's heartbeat."""

    node: str
    pid: int
    started_at: float
    at: float
    queues: list[str]
    concurrency: int
    prefetch: str
    master_rss_kib: int | None
    tasks: int = 0
    failed: int = 0
    children: list[ChildStats] = field(default_factory=list)
    exits: dict[str, int] = field(default_factory=dict)
    recent_exits: list[ChildExit] = field(default_factory=list)
    state: str = "running"
    #: the master's broker connection pool (networked brokers): in use, waits, timeouts
    broker_pool: dict[str, Any] | None = None
    memory: MemoryReport | None = None
    #: per queue and task name, over the node's life
    runs: list[TaskRuns] = field(default_factory=list)
    #: per child slot, runs finished per queue with the time they were counted (rates);
    #: None: the worker publishes no counting time (an older version)
    counted: list[SlotCounts] | None = None

    def to_json(self) -> bytes:
        """Encode for the broker's node table."""
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> WorkerStats:
        """Decode a heartbeat written by :meth:`to_json`."""
        data: dict[str, Any] = orjson.loads(raw)
        data["children"] = [ChildStats(**c) for c in data.get("children", [])]
        data["recent_exits"] = [
            ChildExit(**{**e, "reason": ExitReason(e["reason"])}) for e in data.get("recent_exits", [])
        ]
        data["runs"] = [TaskRuns(**r) for r in data.get("runs", [])]
        if data.get("counted") is not None:
            data["counted"] = [SlotCounts(**c) for c in data["counted"]]
        if data.get("memory") is not None:
            data["memory"] = MemoryReport.from_dict(data["memory"])
        return cls(**data)
