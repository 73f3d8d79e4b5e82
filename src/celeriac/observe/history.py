"""The monitor's history: an embedded SQLite file that survives restarts.

Three tiers, each a resolution with its own retention:

* tier 0: every sample (``monitor_interval``), kept :data:`RAW_KEEP_S` (6 hours);
* tier 1: one row per minute, kept 7 days;
* tier 2: one row per hour, kept ``monitor_history_days``.

A coarser row holds the largest lengths and ages of its period (a spike stays
visible when zoomed out), the last value of each cumulative counter, so rates
over any range are differences of counters whatever the tier, and the mean of
the per-sample arrival and service rates the monitor measured (on the workers'
counting time, :mod:`celeriac.observe.rates`).

A file written before a column existed gets it added when it is opened (rows
from before read it as null). The time the rate columns were added is kept
(:attr:`History.rates_from`), so a reader can tell a row stored before them from
a sample whose rates were unknown.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeriac.observe.alerts import Condition

RAW_KEEP_S = 6 * 3600.0
MINUTE_KEEP_S = 7 * 86400.0
#: (tier, period in seconds) of the coarse tiers
ROLLUPS = ((1, 60.0), (2, 3600.0))

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS samples (
        tier INTEGER NOT NULL, t REAL NOT NULL, queue TEXT NOT NULL,
        ready INTEGER NOT NULL, scheduled INTEGER NOT NULL, reserved INTEGER NOT NULL,
        running INTEGER NOT NULL, oldest_age REAL,
        finished INTEGER, failed INTEGER, busy_s REAL, arrived INTEGER,
        p50 REAL, p95 REAL, p99 REAL, arrival_rate REAL, service_rate REAL,
        PRIMARY KEY (tier, t, queue)) WITHOUT ROWID""",
    # by time: roll-ups and expiry read one period; by queue: a queue's graph
    "CREATE INDEX IF NOT EXISTS samples_by_queue ON samples(tier, queue, t)",
    """CREATE TABLE IF NOT EXISTS nodes (
        tier INTEGER NOT NULL, t REAL NOT NULL, node TEXT NOT NULL,
        children INTEGER NOT NULL, master_rss_kib INTEGER, children_rss_kib INTEGER,
        PRIMARY KEY (tier, t, node)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, queue TEXT, kind TEXT NOT NULL,
        level TEXT NOT NULL, fired_at REAL NOT NULL, cleared_at REAL, message TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alerts_open ON alerts(key) WHERE cleared_at IS NULL",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
)


@dataclass(frozen=True, slots=True)
class QueuePoint:
    """One queue at one time. Counters are cumulative; None where no worker reports them."""

    t: float
    queue: str
    ready: int
    scheduled: int
    reserved: int
    running: int
    oldest_age: float | None = None
    #: runs from this queue finished (any outcome), failed, and seconds spent running them
    finished: int | None = None
    failed: int | None = None
    busy_s: float | None = None
    #: messages that arrived: finished + still in the queue
    arrived: int | None = None
    #: run-time percentiles of the runs that finished since the previous point (seconds)
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    #: messages per second arriving and finishing over the sample's interval (None: unknown)
    arrival_rate: float | None = None
    service_rate: float | None = None

    @property
    def length(self) -> int:
        """Every message not yet finished."""
        return self.ready + self.scheduled + self.reserved + self.running


@dataclass(frozen=True, slots=True)
class NodePoint:
    """A worker node's memory at one time."""

    t: float
    node: str
    children: int
    master_rss_kib: int | None
    children_rss_kib: int | None


_POINT_FIELDS = [f.name for f in fields(QueuePoint)]
_NODE_FIELDS = [f.name for f in fields(NodePoint)]


def _rollup_sql(table: str, keys: str, maxed: Sequence[str], averaged: Sequence[str] = ()) -> str:
    columns = ", ".join([*maxed, *averaged])
    aggregates = ", ".join([*(f"MAX({c})" for c in maxed), *(f"AVG({c})" for c in averaged)])
    return (
        f"INSERT OR REPLACE INTO {table} (tier, t, {keys}, {columns}) "
        f"SELECT ?, CAST(t / ? AS INTEGER) * ?, {keys}, {aggregates} FROM {table} "
        f"WHERE tier = ? AND t >= ? AND t < ? GROUP BY {keys}, CAST(t / ? AS INTEGER)"
    )


_ROLLUP_SAMPLES = _rollup_sql(
    "samples",
    "queue",
    [
        "ready",
        "scheduled",
        "reserved",
        "running",
        "oldest_age",
        "finished",
        "failed",
        "busy_s",
        "arrived",
        "p95",
        "p99",
    ],
    ["p50", "arrival_rate", "service_rate"],
)
#: columns added to ``samples`` after its first release, with their types
_ADDED_COLUMNS = {"arrival_rate": "REAL", "service_rate": "REAL"}
_ROLLUP_NODES = _rollup_sql("nodes", "node", ["children", "master_rss_kib", "children_rss_kib"])


class History:
    """The store; one writer (the monitor), any number of readers (dashboard threads)."""

    def __init__(self, path: str | Path, days: int = 30) -> None:
        self.path = str(path)
        self.keep_s = days * 86400.0
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        #: samples before this time were stored without their rates (an older version wrote them)
        self.rates_from = 0.0
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self.rates_from = self._add_columns()
        except sqlite3.Error as exc:
            raise OSError(
                f"cannot open the monitor history {self.path}: {exc} "
                "(set monitor_history_path or --history to a writable file)"
            ) from exc
        self._rolled = {tier: self._last_t(tier) for tier, _ in ROLLUPS}

    def _add_columns(self) -> float:
        """Add the columns a file from an older version lacks; return when the rates began."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(samples)")}
        missing = [column for column in _ADDED_COLUMNS if column not in have]
        for column in missing:
            self._db.execute(f"ALTER TABLE samples ADD COLUMN {column} {_ADDED_COLUMNS[column]}")
        if missing:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('rates_from', ?)", (time.time(),))
        row = self._db.execute("SELECT value FROM meta WHERE key = 'rates_from'").fetchone()
        return float(row[0]) if row else 0.0

    def _last_t(self, tier: int) -> float:
        row = self._db.execute("SELECT MAX(t) FROM samples WHERE tier = ?", (tier,)).fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ----------------------------------------------------------------------------

    def add(self, points: Iterable[QueuePoint], nodes: Iterable[NodePoint] = ()) -> None:
        """Store one sample of every queue and node; roll up and expire when a period ends."""
        queue_rows = [(0, *(getattr(p, f) for f in _POINT_FIELDS)) for p in points]
        node_rows = [(0, *(getattr(n, f) for f in _NODE_FIELDS)) for n in nodes]
        if not queue_rows and not node_rows:
            return
        now = max([r[1] for r in queue_rows] + [r[1] for r in node_rows])
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR REPLACE INTO samples (tier, {', '.join(_POINT_FIELDS)}) "
                f"VALUES ({', '.join('?' * (len(_POINT_FIELDS) + 1))})",
                queue_rows,
            )
            self._db.executemany(
                f"INSERT OR REPLACE INTO nodes (tier, {', '.join(_NODE_FIELDS)}) "
                f"VALUES ({', '.join('?' * (len(_NODE_FIELDS) + 1))})",
                node_rows,
            )
            self._roll_up(now)

    def _roll_up(self, now: float) -> None:
        source = 0
        for tier, period in ROLLUPS:
            start = self._rolled[tier]
            end = (now // period) * period  # only whole periods
            if end > start:
                for sql in (_ROLLUP_SAMPLES, _ROLLUP_NODES):
                    self._db.execute(sql, (tier, period, period, source, start, end, period))
                self._rolled[tier] = end
                self._expire(now)
            source = tier

    def _expire(self, now: float) -> None:
        for tier, keep in ((0, RAW_KEEP_S), (1, MINUTE_KEEP_S), (2, self.keep_s)):
            for table in ("samples", "nodes"):
                self._db.execute(f"DELETE FROM {table} WHERE tier = ? AND t < ?", (tier, now - keep))
        self._db.execute("DELETE FROM alerts WHERE cleared_at < ?", (now - self.keep_s,))

    def alert_fired(self, condition: Condition, at: float) -> None:
        """Record an alert that fired (closing an open one of the same key: a new level)."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE alerts SET cleared_at = ? WHERE key = ? AND cleared_at IS NULL", (at, condition.key)
            )
            self._db.execute(
                "INSERT INTO alerts (key, queue, kind, level, fired_at, message) VALUES (?, ?, ?, ?, ?, ?)",
                (condition.key, condition.queue, condition.kind, condition.level, at, condition.message),
            )

    def alert_cleared(self, key: str, at: float) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE alerts SET cleared_at = ? WHERE key = ? AND cleared_at IS NULL", (at, key)
            )

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def tier_for(span_s: float) -> int:
        """The finest tier that still holds a range this long."""
        if span_s <= RAW_KEEP_S:
            return 0
        return 1 if span_s <= MINUTE_KEEP_S else 2

    def points(self, since: float, until: float, queue: str | None = None) -> list[QueuePoint]:
        """Stored points of one queue (or all), oldest first, at the finest tier covering the range."""
        where, params = ("AND queue = ?", (queue,)) if queue is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_POINT_FIELDS)} FROM samples WHERE tier = ? AND t >= ? AND t <= ? "
                f"{where} ORDER BY t",
                (self.tier_for(until - since), since, until, *params),
            ).fetchall()
        return [QueuePoint(*row) for row in rows]

    def node_points(self, since: float, until: float) -> list[NodePoint]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_NODE_FIELDS)} FROM nodes "
                "WHERE tier = ? AND t >= ? AND t <= ? ORDER BY t",
                (self.tier_for(until - since), since, until),
            ).fetchall()
        return [NodePoint(*row) for row in rows]

    def latest(self) -> dict[str, QueuePoint]:
        """The last raw point of every queue (counters carry on from these after a restart)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_POINT_FIELDS)} FROM samples WHERE tier = 0 AND (queue, t) IN "
                "(SELECT queue, MAX(t) FROM samples WHERE tier = 0 GROUP BY queue)"
            ).fetchall()
        return {row[1]: QueuePoint(*row) for row in rows}

    def alerts(self, since: float, limit: int = 100) -> list[dict[str, Any]]:
        """Alerts fired or still open since ``since``, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, queue, kind, level, fired_at, cleared_at, message FROM alerts "
                "WHERE cleared_at IS NULL OR cleared_at >= ? ORDER BY fired_at DESC LIMIT ?",
                (since, limit),
            ).fetchall()
        names = ("key", "queue", "kind", "level", "fired_at", "cleared_at", "message")
        return [dict(zip(names, row, strict=True)) for row in rows]
