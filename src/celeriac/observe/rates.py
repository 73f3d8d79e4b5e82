"""Service rates on the workers' own clock, whenever the monitor happens to sample.

A worker counts runs in its children and publishes the counts in a heartbeat every
``worker_stats_interval``; the monitor samples every ``monitor_interval``. Dividing a
count's change by the time between two *samples* aliases: a sample that saw no new
heartbeat reads zero, the next one reads double. So each child slot's count carries the
time it was true (:class:`~celeriac.observe.records.SlotCounts`: the child's report, once a
second while it serves), and a rate is a count's change over the change in *that* time.

:class:`AlignedRates` keeps the counts of every slot of every live node it has seen, one
per heartbeat that brought news. A slot's rate over a span ends at its latest count and
starts at the latest count at least the span before it, so it is exact for the time
between those two counts; a queue's rate is the sum over the slots of the nodes that
consume it. Until a slot's next heartbeat arrives, its rate stays what it was. A queue that
a live node consumes without publishing slot counts (an older version, during a rolling
upgrade) has no aligned rate: the other nodes' counts alone would leave its runs out.

What remains is lag: a rate describes the span ending at the slot's last report, at most
``worker_stats_interval`` plus one second before the sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from celeriac.observe.records import WorkerStats

__all__ = ["AlignedRates", "Rate"]


@dataclass(frozen=True, slots=True)
class Rate:
    """A queue's service rate and the longest span (seconds of counting time) it was taken over."""

    per_s: float
    span_s: float


@dataclass(frozen=True, slots=True)
class _Count:
    at: float
    finished: dict[str, int]


class _Series:
    """One slot's counts, oldest first: those within ``keep_s`` of the latest, and one older."""

    __slots__ = ("counts", "queues")

    def __init__(self, queues: list[str]) -> None:
        self.counts: deque[_Count] = deque()
        self.queues = frozenset(queues)

    def add(self, at: float, finished: dict[str, int], keep_s: float) -> None:
        if self.counts and at <= self.counts[-1].at:
            return  # no news since the last heartbeat
        self.counts.append(_Count(at, finished))
        while len(self.counts) > 2 and self.counts[1].at <= at - keep_s:
            self.counts.popleft()

    def rate(self, queue: str, span: float) -> Rate | None:
        """This slot's runs of ``queue`` per second over the ``span`` before its latest count."""
        if len(self.counts) < 2:
            return None
        last = self.counts[-1]
        start = self.counts[0]
        for count in reversed(self.counts):  # newest first: the latest count a span before the last
            if count.at <= last.at - span:
                start = count
                break
        if start is last:
            start = self.counts[-2]
        elapsed = last.at - start.at
        done = last.finished.get(queue, 0) - start.finished.get(queue, 0)
        return Rate(max(done, 0) / elapsed, elapsed)


class AlignedRates:
    """The slots' counts of the live nodes and the rates they give; fed once per sample."""

    def __init__(self, keep_s: float) -> None:
        #: how much counting time to keep per slot (the longest span asked for)
        self.keep_s = keep_s
        self._series: dict[tuple[str, int, float, int], _Series] = {}
        #: queues a live node consumes without publishing slot counts
        self._uncounted: set[str] = set()

    def update(self, nodes: Iterable[WorkerStats]) -> None:
        """Add the counts of each node's latest heartbeat; forget the slots of nodes gone."""
        seen = set()
        self._uncounted = set()
        for node in nodes:
            if node.counted is None:
                self._uncounted.update(node.queues)
                continue
            for slot in node.counted:
                key = (node.node, node.pid, node.started_at, slot.index)
                seen.add(key)
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series(node.queues)
                elif len(series.queues) != len(node.queues) or not series.queues.issuperset(node.queues):
                    series.queues = frozenset(node.queues)  # a consumer added or cancelled
                series.add(slot.at, slot.finished, self.keep_s)
        for key in self._series.keys() - seen:
            del self._series[key]

    def covers(self, queue: str) -> bool:
        """Whether the live nodes that consume ``queue`` publish counts (then only they give rates)."""
        return queue not in self._uncounted and any(
            queue in series.queues for series in self._series.values()
        )

    def rate(self, queue: str, span: float) -> Rate | None:
        """Runs of ``queue`` finished per second over about ``span`` seconds (None: not known).

        Only slots whose node consumes the queue count, and only once they have two counts; None
        while a node consumes the queue without publishing counts (its runs would be left out).
        """
        if queue in self._uncounted:
            return None
        total, longest, known = 0.0, 0.0, False
        for series in self._series.values():
            if queue not in series.queues:
                continue
            rate = series.rate(queue, span)
            if rate is not None:
                total += rate.per_s
                longest = max(longest, rate.span_s)
                known = True
        return Rate(total, longest) if known else None
