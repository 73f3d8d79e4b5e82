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


class ExitReason(enum.StrEnum):
    """Why a child process ended."""

    MAX_TASKS = "max-tasks"
    MAX_MEMORY = "max-memory"
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
        return cls(**data)
