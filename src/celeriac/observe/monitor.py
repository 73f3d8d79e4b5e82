"""The monitor: samples every queue and every worker's heartbeat, keeps history, raises alerts.

Per queue it measures, over the last ``monitor_overload_after`` seconds:

* **service rate** μ: runs from the queue that finished, per second, from the run
  counts workers publish in their heartbeats, over the time the workers counted them
  (:mod:`celeriac.observe.rates`), not the time the monitor read them;
* **arrival rate** λ = μ + the queue's growth per second over the same span (what
  arrived either left or is still there);
* mean run time *S*, **utilisation** λ·S / processes consuming the queue, the
  **time to drain** the backlog L / (μ - λ), and the expected **wait** of a
  message arriving now;
* **overload**: the queue grew through the whole window, in each half of it,
  with λ > μ. The alert says by how much, how many more worker processes would
  hold the queue — ⌈(λ - μ) / r⌉, where one process serves r = min(1/S, μ per
  process consuming the queue) — and how long the backlog takes to drain with
  them. It clears once the queue shrinks again.

Each queue is in one of :data:`QUEUE_STATES`: ``overloaded`` (the alert above),
``growing`` (the window's estimate says it will not drain: λ > μ, or without rates
the length grew over the window, while the length does not shrink; it takes
:data:`GROWING_AFTER_SAMPLES` such samples in a row to enter and as many without to
leave, so one noisy sample does not flip it), or ``ok``. An empty queue is ``ok``.

Each sample also stores the rates over the last ``monitor_interval`` alone (at least
one heartbeat's span), aligned the same way, for the history and the dashboard's chart.

Queues whose workers publish no run counts (a plain Celery deployment) get
lengths, growth and the overload alert from growth alone.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from celeriac.brokers.base import QueueLength
from celeriac.errors import BrokerError
from celeriac.observe.alerts import AlertBook, Condition, Outbox, Sink, command_sink, webhook_sink
from celeriac.observe.history import History, NodePoint, QueuePoint
from celeriac.observe.rates import AlignedRates, Rate
from celeriac.observe.records import RUNTIME_BUCKETS, WorkerStats
from celeriac.observe.watch import queue_limits, watched_queues

if TYPE_CHECKING:
    from celeriac.app import Celeriac

logger = logging.getLogger("celeriac.monitor")

#: how often the list of queues is read again from the broker
DISCOVER_EVERY_S = 30.0
#: how much recent history the monitor keeps in memory (rates, age estimates)
TRACK_S = 3600.0
#: an alert clears once its condition has been gone this many samples in a row (no flapping)
CLEAR_AFTER_SAMPLES = 3
#: overload needs the backlog to grow by at least this many messages over the window
MIN_GROWTH = 5
#: a queue's states, mildest first
QUEUE_STATES = ("ok", "growing", "overloaded")
#: samples in a row that must agree before a queue enters or leaves the growing state
GROWING_AFTER_SAMPLES = 2
_THRESHOLD_LABEL = {"length": "messages waiting", "oldest_age": "oldest message age", "wait": "expected wait"}


def quantile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of a run-time histogram (linear within a bucket, like Prometheus)."""
    total = sum(buckets)
    if total <= 0:
        return None
    target = q * total
    seen = 0
    lower = 0.0
    for count, upper in zip(buckets, (*RUNTIME_BUCKETS, math.inf), strict=True):
        if count and seen + count >= target:
            if upper == math.inf:
                return lower
            return lower + (upper - lower) * (target - seen) / count
        seen += count
        lower = upper
    return lower


@dataclass(slots=True)
class Tick:
    """One sample of a queue, kept in memory for rates and age estimates."""

    t: float
    length: QueueLength
    finished: int | None
    failed: int | None
    busy_s: float | None
    buckets: list[int] | None

    @property
    def total(self) -> int:
        return self.length.total

    @property
    def arrived(self) -> int | None:
        return None if self.finished is None else self.finished + self.length.total


_tick_time = attrgetter("t")


class Track:
    """One queue's ticks of the last :data:`TRACK_S`, oldest first, found by bisection.

    Each sample looks up a handful of ticks (the window's start and middle, the first with
    run counts, the oldest message's arrival); none walks the hour.
    """

    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        #: since when messages wait here with no worker listing the queue and none taken
        self.unserved_since: float | None = None
        #: whether the queue is in the growing state, and how many samples in a row said otherwise
        self.growing = False
        self.against = 0

    def add(self, tick: Tick) -> None:
        self.ticks.append(tick)
        stale = self._index(tick.t - TRACK_S)
        if stale > 64:  # drop old ticks in batches, not one by one
            del self.ticks[:stale]

    def _index(self, t: float) -> int:
        """Where the first tick at or after ``t`` is."""
        return bisect_left(self.ticks, t, key=_tick_time)

    def from_time(self, t: float) -> Tick:
        """The first tick at or after ``t`` (the last one if none)."""
        return self.ticks[min(self._index(t), len(self.ticks) - 1)]

    def nearest(self, t: float) -> Tick:
        i = self._index(t)
        if i == 0:
            return self.ticks[0]
        if i == len(self.ticks):
            return self.ticks[-1]
        before, after = self.ticks[i - 1], self.ticks[i]
        return before if t - before.t <= after.t - t else after

    def first_counted(self, since: float) -> Tick | None:
        """The first tick at or after ``since`` with run counts."""
        for i in range(self._index(since), len(self.ticks)):
            if self.ticks[i].finished is not None:
                return self.ticks[i]
        return None

    def arrival_of(self, number: int) -> tuple[Tick | None, Tick] | None:
        """The ticks just before and at which arrivals first reached ``number`` (None: not seen)."""
        i = bisect_left(self.ticks, number, key=lambda t: -1 if t.arrived is None else t.arrived)
        if i == len(self.ticks):
            return None
        return (self.ticks[i - 1] if i else None), self.ticks[i]


@dataclass(slots=True)
class QueueView:
    """What the monitor knows about one queue now."""

    name: str
    ready: int
    scheduled: int
    reserved: int
    running: int
    length: int
    oldest_age: float | None = None
    #: True when the age comes from the monitor's history rather than from the broker
    oldest_age_estimated: bool = False
    window_s: float = 0.0
    arrival_rate: float | None = None
    service_rate: float | None = None
    growth_rate: float | None = None
    mean_runtime_s: float | None = None
    utilisation: float | None = None
    drain_s: float | None = None
    wait_s: float | None = None
    overloaded: bool = False
    #: one of QUEUE_STATES: "ok", "growing" (will not drain at the window's rates) or "overloaded"
    state: str = "ok"
    #: what one more worker process would serve of this queue per second
    process_rate: float | None = None
    extra_processes: int | None = None
    drain_with_extra_s: float | None = None
    processes: int = 0
    consumers: list[str] = field(default_factory=list)
    #: how long messages have waited with no worker listing the queue and none taken
    #: (None: the queue is served, or nothing waits)
    unserved_s: float | None = None
    finished: int | None = None
    failed: int | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(slots=True)
class MonitorState:
    """Everything the dashboard, /metrics and ``celeriac top`` show, from one sample."""

    at: float
    broker: str
    interval: float
    queues: list[QueueView]
    nodes: list[WorkerStats]
    alerts: list[dict[str, Any]]
    #: per (queue, task): [succeeded, failed, retried, other, seconds, *buckets], cumulative
    tasks: dict[tuple[str, str], list[Any]]
    sample_s: float = 0.0
    error: str | None = None


class Totals:
    """Counters that only go up, added from the differences between heartbeats.

    A worker seen at the monitor's first sample is a baseline: what it ran
    before is not counted again. A worker that starts later counts from zero.
    A node that restarts is a new worker (its pid and start time change).
    """

    def __init__(self) -> None:
        self.tasks: dict[tuple[str, str], list[Any]] = {}
        self._last: dict[tuple[str, int, float], dict[tuple[str, str], list[Any]]] = {}
        self._samples = 0

    def add(self, nodes: Iterable[WorkerStats]) -> None:
        for node in nodes:
            ident = (node.node, node.pid, node.started_at)
            current = {
                (r.queue, r.task): [r.succeeded, r.failed, r.retried, r.other, r.runtime_sum_s, *r.buckets]
                for r in node.runs
            }
            previous = self._last.get(ident)
            if previous is None and self._samples == 0:
                previous = current  # a baseline: counted before the monitor started
            self._last[ident] = current
            for key, row in current.items():
                before = (previous or {}).get(key)
                total = self.tasks.setdefault(key, [0] * len(row))
                for i, value in enumerate(row):
                    total[i] += value - before[i] if before is not None else value
        self._samples += 1

    def per_queue(self) -> dict[str, tuple[int, int, float, list[int]]]:
        """Per queue: finished, failed, seconds, buckets."""
        out: dict[str, tuple[int, int, float, list[int]]] = {}
        for (queue, _task), row in self.tasks.items():
            finished, failed, busy, buckets = out.get(queue, (0, 0, 0.0, [0] * (len(row) - 5)))
            out[queue] = (
                finished + row[0] + row[1] + row[2] + row[3],
                failed + row[1],
                busy + row[4],
                [a + b for a, b in zip(buckets, row[5:], strict=True)],
            )
        return out


class Monitor:
    """Samples a broker's queues and heartbeats; one :meth:`sample` per ``interval``."""

    def __init__(
        self,
        app: Celeriac,
        history: History,
        queues: Sequence[str] = (),
        interval: float | None = None,
        sinks: dict[str, Sink] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        conf = app.conf
        self.clock = clock
        self.app = app
        self.broker = app.broker
        self.history = history
        self.interval = interval if interval is not None else conf.monitor_interval
        self.window_s = conf.monitor_overload_after
        if sinks is None:
            sinks = {}
            if conf.monitor_webhook_url:
                sinks["webhook"] = webhook_sink(conf.monitor_webhook_url)
            if conf.monitor_alert_command:
                sinks["command"] = command_sink(conf.monitor_alert_command)
        self.outbox = Outbox(sinks)
        self.alerts = AlertBook(
            conf.monitor_alert_repeat,
            self.outbox,
            clear_after_s=CLEAR_AFTER_SAMPLES * self.interval,
            on_fire=lambda a: history.alert_fired(a.condition, a.since),
            on_clear=lambda a, at: history.alert_cleared(a.condition.key, at),
        )
        self.extra_queues = list(queues)
        self.totals = Totals()
        self.aligned = AlignedRates(keep_s=max(self.window_s, self.interval) + self.interval)
        self.tracks: dict[str, Track] = {}
        self.overloaded: set[str] = set()
        self._offsets = {
            q: (p.finished or 0, p.failed or 0, p.busy_s or 0.0) for q, p in history.latest().items()
        }
        self._queues: list[str] = []
        self._discovered_at = -math.inf
        self.state = MonitorState(time.time(), self.broker.location, self.interval, [], [], [], {})
        self._lock = threading.Lock()

    def queue_names(self, now: float) -> list[str]:
        """Queues to sample: the broker's, the app's and those named on the command line."""
        if now - self._discovered_at >= DISCOVER_EVERY_S:
            self._discovered_at = now
            self._queues = watched_queues(self.app, self.extra_queues)
        return self._queues

    # -- sampling ---------------------------------------------------------------------------

    def sample(self) -> MonitorState:
        """Read the broker once, store the sample, update rates and alerts."""
        started = time.perf_counter()
        now = self.clock()
        try:
            lengths = self.broker.queue_lengths(self.queue_names(now))
            nodes = self._nodes()
        except BrokerError as exc:
            logger.error("cannot sample the broker %s: %s", self.broker.location, exc)
            with self._lock:
                self.state.error = str(exc)
            return self.state
        self.totals.add(nodes)
        live = [n for n in nodes if n.state == "running"]
        self.aligned.update(live)
        per_queue = self.totals.per_queue()
        views, points = [], []
        # a queue a live celeriac worker consumes, with no runs reported yet, has finished none
        none = (0, 0, 0.0, [0] * (len(RUNTIME_BUCKETS) + 1))
        for name in {q for n in live for q in n.queues}:
            per_queue.setdefault(name, none)
        for length in lengths:
            tick = self._tick(now, length, per_queue.get(length.queue))
            view = self._view(length.queue, tick, live)
            views.append(view)
            points.append(self._point(tick, view, *self._sample_rates(length.queue, tick)))
        self._capacity(views, live)
        node_points = [
            NodePoint(
                now,
                n.node,
                len(n.children),
                n.master_rss_kib,
                sum(c.rss_kib or 0 for c in n.children) if n.children else None,
            )
            for n in live
        ]
        self.history.add(points, node_points)
        conditions = [c for view in views for c in self._conditions(view)]
        self.alerts.update(conditions, now)
        state = MonitorState(
            at=now,
            broker=self.broker.location,
            interval=self.interval,
            queues=views,
            nodes=nodes,
            alerts=[a.as_dict() for a in self.alerts.active.values()],
            tasks={k: list(v) for k, v in self.totals.tasks.items()},
            sample_s=time.perf_counter() - started,
        )
        with self._lock:
            self.state = state
        return state

    def current(self) -> MonitorState:
        """The last sample's state (safe from any thread)."""
        with self._lock:
            return self.state

    def _nodes(self) -> list[WorkerStats]:
        nodes = []
        for entry in self.broker.node_stats():
            try:
                nodes.append(WorkerStats.from_json(entry.payload))
            except (ValueError, TypeError, KeyError) as exc:
                logger.warning("skipping the unreadable heartbeat of %s: %s", entry.node, exc)
        return nodes

    def _tick(
        self, now: float, length: QueueLength, counts: tuple[int, int, float, list[int]] | None
    ) -> Tick:
        track = self.tracks.setdefault(length.queue, Track())
        offset = self._offsets.get(length.queue)
        if counts is None and offset is None:
            tick = Tick(now, length, None, None, None, None)
        else:
            finished, failed, busy, buckets = counts or (0, 0, 0.0, [0] * (len(RUNTIME_BUCKETS) + 1))
            base = offset or (0, 0, 0.0)
            tick = Tick(now, length, finished + base[0], failed + base[1], busy + base[2], buckets)
        track.add(tick)
        return tick

    def _sample_rates(self, name: str, tick: Tick) -> tuple[float | None, float | None]:
        """Arrival and service rates over the last interval, for the history (None: unknown).

        Aligned to the workers' counting time where they publish it, and then over at least one
        heartbeat's span (unknown until a slot has counted twice); else (workers that publish
        no counting time) from the run counts' change since the previous sample.
        """
        track = self.tracks[name]
        if len(track.ticks) < 2:
            return None, None
        aligned = self.aligned.rate(name, self.interval)
        if aligned is not None:
            past = self._tick_before(track, tick, max(self.interval, aligned.span_s))
            return self._arrivals(aligned, past, tick), aligned.per_s
        if self.aligned.covers(name):
            return None, None  # the workers' second count is yet to come: no aliased guess meanwhile
        past = track.ticks[-2]
        if tick.finished is None or past.finished is None or tick.finished < past.finished:
            return None, None
        elapsed = tick.t - past.t
        arrived = (tick.arrived or 0) - (past.arrived or 0)
        return arrived / elapsed, (tick.finished - past.finished) / elapsed

    @staticmethod
    def _tick_before(track: Track, tick: Tick, span: float) -> Tick:
        """The sample nearest ``span`` before ``tick``, never ``tick`` itself."""
        past = track.nearest(tick.t - span)
        return past if past is not tick else track.ticks[-2]

    @staticmethod
    def _arrivals(service: Rate, past: Tick, tick: Tick) -> float | None:
        """λ = μ + the length's growth per second between two samples."""
        if tick.t <= past.t:
            return None
        return max(0.0, service.per_s + (tick.total - past.total) / (tick.t - past.t))

    @staticmethod
    def _point(
        tick: Tick, view: QueueView, arrival_rate: float | None, service_rate: float | None
    ) -> QueuePoint:
        length = tick.length
        return QueuePoint(
            tick.t,
            length.queue,
            length.ready,
            length.scheduled,
            length.reserved,
            length.running,
            view.oldest_age,
            tick.finished,
            tick.failed,
            tick.busy_s,
            tick.arrived,
            view.p50,
            view.p95,
            view.p99,
            arrival_rate,
            service_rate,
        )

    # -- analysis ---------------------------------------------------------------------------

    def _view(self, name: str, tick: Tick, live: list[WorkerStats]) -> QueueView:
        length = tick.length
        consumers = [n for n in live if name in n.queues]
        view = QueueView(
            name,
            length.ready,
            length.scheduled,
            length.reserved,
            length.running,
            length.total,
            oldest_age=length.oldest_age,
            processes=sum(n.concurrency for n in consumers),
            consumers=[n.node for n in consumers],
            finished=tick.finished,
            failed=tick.failed,
        )
        track = self.tracks[name]
        view.unserved_s = self._unserved(track, view, tick)
        start = track.from_time(tick.t - self.window_s - self.interval / 2)
        span = tick.t - start.t
        if view.oldest_age is None and length.ready:
            view.oldest_age = self._estimate_age(track, tick)
            view.oldest_age_estimated = view.oldest_age is not None
        if span <= 0:
            return view
        view.window_s = span
        view.growth_rate = (tick.total - start.total) / span
        # rates from the first sample in the window with run counts (workers report late)
        counted = track.first_counted(start.t)
        counted_span = tick.t - counted.t if counted is not None else 0.0
        if counted is not None and counted_span >= 2 * self.interval and tick.finished is not None:
            done = tick.finished - (counted.finished or 0)
            view.service_rate = done / counted_span
            growth = (tick.total - counted.total) / counted_span
            view.arrival_rate = max(0.0, view.service_rate + growth)
            if done > 0:
                view.mean_runtime_s = ((tick.busy_s or 0.0) - (counted.busy_s or 0.0)) / done
            if tick.buckets is not None and counted.buckets is not None:
                window = [a - b for a, b in zip(tick.buckets, counted.buckets, strict=True)]
                view.p50, view.p95, view.p99 = (quantile(window, q) for q in (0.5, 0.95, 0.99))
        aligned = self.aligned.rate(name, self.window_s)
        if aligned is not None:
            # on the workers' counting time: exact for its span, whenever the heartbeats came
            view.service_rate = aligned.per_s
            view.arrival_rate = self._arrivals(aligned, self._tick_before(track, tick, aligned.span_s), tick)
        self._rates(view, track, start, tick)
        return view

    def _rates(self, view: QueueView, track: Track, start: Tick, tick: Tick) -> None:
        mu, lam, runtime = view.service_rate, view.arrival_rate, view.mean_runtime_s
        if runtime and view.processes and lam is not None:
            view.utilisation = lam * runtime / view.processes
        if mu is not None and lam is not None:
            if view.length == 0:
                view.drain_s = 0.0
            elif mu > lam:
                view.drain_s = view.length / (mu - lam)
            if mu > 0:
                view.wait_s = (view.ready + view.reserved) / mu
        middle = track.nearest((start.t + tick.t) / 2)
        full = tick.t - start.t >= self.window_s * 0.9
        growing = (
            full
            and start.total < middle.total < tick.total
            and tick.total - start.total >= MIN_GROWTH
            and (lam is None or mu is None or lam > mu)
        )
        if view.name in self.overloaded:
            # clears once the queue shrinks over the last half window (or is empty)
            if tick.total < middle.total or tick.total == 0:
                self.overloaded.discard(view.name)
        elif growing:
            self.overloaded.add(view.name)
        view.overloaded = view.name in self.overloaded
        rising = self._rising(view, track, tick)
        view.state = "overloaded" if view.overloaded else "growing" if rising else "ok"

    @staticmethod
    def _rising(view: QueueView, track: Track, tick: Tick) -> bool:
        """Whether the queue is growing: its backlog will not drain at the window's rates.

        A sample says so when the queue is not empty, the window's estimate has λ > μ (without
        run counts: the length grew over the window), and the length is not below the previous
        sample's. The state changes once :data:`GROWING_AFTER_SAMPLES` samples in a row disagree
        with it, so a queue rising steadily shows it by the second sample and a single noisy
        sample changes nothing. An empty queue is not growing.
        """
        if tick.total == 0:
            track.growing, track.against = False, 0
            return False
        lam, mu = view.arrival_rate, view.service_rate
        ahead = lam > mu if lam is not None and mu is not None else (view.growth_rate or 0.0) > 0
        says = ahead and tick.total >= track.ticks[-2].total
        if says == track.growing:
            track.against = 0
        else:
            track.against += 1
            if track.against >= GROWING_AFTER_SAMPLES:
                track.growing, track.against = says, 0
        return track.growing

    @staticmethod
    def _unserved(track: Track, view: QueueView, tick: Tick) -> float | None:
        """How long ready messages have waited with no consumer (None: served or empty).

        A queue is served when a live worker lists it, when the broker counts a consumer on it
        (RabbitMQ counts any client's), or when its length went down since the last sample
        (someone took a message: a Celery worker on Redis, say, which sends no heartbeat).
        """
        taken = len(track.ticks) > 1 and tick.total < track.ticks[-2].total
        if view.processes or tick.length.consumers or not view.ready or taken:
            track.unserved_since = None
            return None
        if track.unserved_since is None:
            track.unserved_since = tick.t
        return tick.t - track.unserved_since

    @staticmethod
    def _capacity(views: list[QueueView], live: list[WorkerStats]) -> None:
        """What one more process would serve of each queue, and how many an overload needs.

        A process serves a task in S plus an overhead o per task (fetch, ack, bookkeeping). The
        processes consuming a queue are busy when it is overloaded, so their time adds up:
        processes = Σ μ·(S + o) over every queue they consume, which gives o.
        """
        by_name = {view.name: view for view in views}
        for view in views:
            mu, lam, runtime = view.service_rate, view.arrival_rate, view.mean_runtime_s
            if not runtime or not mu or lam is None:
                continue
            served = {q for n in live if view.name in n.queues for q in n.queues}
            shared = [by_name[q] for q in served if q in by_name and by_name[q].service_rate]
            rate = sum(v.service_rate or 0.0 for v in shared)
            busy = sum((v.service_rate or 0.0) * (v.mean_runtime_s or 0.0) for v in shared)
            overhead = max(0.0, (view.processes - busy) / rate) if view.processes and rate else 0.0
            view.process_rate = 1 / (runtime + overhead)
            if view.overloaded:
                view.extra_processes = max(1, math.ceil((lam - mu) / view.process_rate))
                capacity = mu + view.extra_processes * view.process_rate
                if capacity > lam:
                    view.drain_with_extra_s = view.length / (capacity - lam)

    @staticmethod
    def _estimate_age(track: Track, tick: Tick) -> float | None:
        """How long the oldest ready message waited, assuming first in, first out.

        It is message number finished + reserved + running + 1; it arrived
        between the last sample whose arrivals (finished + length) fell short of
        that number and the first that reached it.
        """
        if tick.finished is None:
            return None
        number = tick.finished + tick.length.reserved + tick.length.running + 1
        found = track.arrival_of(number)
        if found is None:
            return None
        before, past = found
        arrived = past.arrived or 0
        if before is None or before.arrived is None or arrived <= before.arrived:
            return tick.t - past.t
        # arrivals spread evenly between the two samples
        share = (number - before.arrived) / (arrived - before.arrived)
        return tick.t - (before.t + (past.t - before.t) * share)

    # -- alerts -----------------------------------------------------------------------------

    def _conditions(self, view: QueueView) -> list[Condition]:
        out = []
        values = {"length": view.length, "oldest_age": view.oldest_age, "wait": view.wait_s}
        for kind, (warning, critical) in queue_limits(self.app, view.name).items():
            value = values[kind]
            if value is None or value < warning:
                continue
            level, limit = (
                ("critical", critical) if critical is not None and value >= critical else ("warning", warning)
            )
            unit = "" if kind == "length" else " s"
            out.append(
                Condition(
                    f"{kind}:{view.name}",
                    kind,
                    level,
                    view.name,
                    f"queue {view.name!r}: {_THRESHOLD_LABEL[kind]} {value:.0f}{unit} >= {level} level "
                    f"{limit:.0f}{unit} (monitor_thresholds)",
                    {"value": value, "limit": limit},
                )
            )
        if view.unserved_s is not None and view.unserved_s >= self.window_s:
            out.append(
                Condition(
                    f"no_consumer:{view.name}",
                    "no_consumer",
                    "critical",
                    view.name,
                    f"queue {view.name!r} has no consumer: {view.ready} message(s) ready and none taken "
                    f"for {duration(view.unserved_s)}, and no live worker lists it; start one with "
                    f"`celeriac worker -Q {view.name}`, or route the tasks to a queue that is served",
                    {"ready": view.ready, "unserved_s": round(view.unserved_s, 1)},
                )
            )
        if view.overloaded:
            out.append(
                Condition(
                    f"overload:{view.name}",
                    "overload",
                    "critical",
                    view.name,
                    overload_message(view),
                    _detail(view),
                )
            )
        return out

    # -- running ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_sample: Any = None) -> None:
        """Sample every ``interval`` until ``stop`` is set."""
        next_at = time.monotonic()
        while not stop.is_set():
            state = self.sample()
            if on_sample is not None:
                on_sample(state)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()  # fell behind: do not try to catch up
                delay = 0
            stop.wait(delay)

    def close(self) -> None:
        self.outbox.close()
        self.history.close()


def _detail(view: QueueView) -> dict[str, Any]:
    names = (
        "length",
        "arrival_rate",
        "service_rate",
        "growth_rate",
        "mean_runtime_s",
        "processes",
        "process_rate",
    )
    return {
        **{name: getattr(view, name) for name in names},
        "extra_processes": view.extra_processes,
        "drain_with_extra_s": view.drain_with_extra_s,
        "window_s": view.window_s,
    }


def duration(seconds: float | None) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``, or ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def overload_message(view: QueueView) -> str:
    """The overload alert's sentence, with its figures."""
    growth = view.growth_rate or 0.0
    grows = f"{growth:,.0f}/s" if growth >= 10 else f"{growth * 60:,.0f}/min"
    head = (
        f"queue {view.name!r} is overloaded: {view.length} waiting, growing {grows} for {view.window_s:.0f} s"
    )
    if view.arrival_rate is None or view.service_rate is None:
        return head + " (its workers publish no run counts, so arrival and service rates are unknown)"
    text = (
        f"{head}; arrivals {view.arrival_rate:.1f}/s > service {view.service_rate:.1f}/s, "
        "so it will not drain at this rate"
    )
    if view.extra_processes is not None and view.process_rate:
        text += (
            f"; {view.extra_processes} more worker process(es) (each serves about "
            f"{view.process_rate:,.1f}/s of it) would hold it"
        )
        if view.drain_with_extra_s is not None:
            text += f" and drain the backlog in about {duration(view.drain_with_extra_s)}"
    return text
