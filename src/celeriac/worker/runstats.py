"""What ran, per queue and task name: outcomes and a run-time histogram.

A child counts every run it finishes (:class:`RunCounts`, a dict lookup and a
few increments) and sends the counts since its last report to the master with
its memory tally. The master adds them up for its whole life
(:class:`RunTable`) and publishes the totals in its heartbeat, where the
monitor turns their differences into service rates and run-time percentiles.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from celeriac.observe.records import RUNTIME_BUCKETS, TaskRuns
from celeriac.states import FAILURE, RETRY, SUCCESS

_OUTCOME = {SUCCESS: 0, FAILURE: 1, RETRY: 2}
#: row layout: succeeded, failed, retried, other outcomes, seconds, then one count per bucket
_SECONDS = 4
_FIRST_BUCKET = 5
_WIDTH = _FIRST_BUCKET + len(RUNTIME_BUCKETS) + 1


class RunCounts:
    """Child side: runs finished since the last flush, per (queue, task name)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[Any]] = {}

    def add(self, queue: str, name: str, state: str | None, runtime: float) -> None:
        """Count one run that ended in ``state`` (a result state; None: not run)."""
        key = (queue, name)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0, 0, 0, 0.0] + [0] * (len(RUNTIME_BUCKETS) + 1)
        row[_OUTCOME.get(state, 3)] += 1  # type: ignore[arg-type]
        row[_SECONDS] += runtime
        row[_FIRST_BUCKET + bisect_left(RUNTIME_BUCKETS, runtime)] += 1

    def flush(self) -> list[list[Any]]:
        """The counts since the last flush as ``[queue, name, *row]`` lists, forgetting them."""
        rows, self.rows = self.rows, {}
        return [[queue, name, *row] for (queue, name), row in rows.items()]


def _rows(flushed: list[list[Any]]) -> Iterator[tuple[str, str, list[Any]]]:
    """The well-formed ``(queue, name, row)`` entries of a :meth:`RunCounts.flush`."""
    for entry in flushed:
        if isinstance(entry, list) and len(entry) == _WIDTH + 2:
            queue, name, *row = entry
            yield queue, name, row


def add_finished(into: dict[str, int], flushed: list[list[Any]]) -> None:
    """Add the runs of a :meth:`RunCounts.flush`, any outcome, to per-queue totals."""
    for queue, _name, row in _rows(flushed):
        into[queue] = into.get(queue, 0) + row[0] + row[1] + row[2] + row[3]


class RunTable:
    """Master side: the children's counts added up over the node's life."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[Any]] = {}

    def merge(self, flushed: list[list[Any]]) -> None:
        """Add a child's report (a :meth:`RunCounts.flush`); malformed rows are skipped."""
        for queue, name, row in _rows(flushed):
            total = self.rows.get((queue, name))
            if total is None:
                self.rows[(queue, name)] = row
            else:
                for i, value in enumerate(row):
                    total[i] += value

    def records(self) -> list[TaskRuns]:
        """The totals, for the heartbeat."""
        return [
            TaskRuns(
                queue=queue,
                task=name,
                succeeded=row[0],
                failed=row[1],
                retried=row[2],
                other=row[3],
                runtime_sum_s=round(row[_SECONDS], 6),
                buckets=row[_FIRST_BUCKET:],
            )
            for (queue, name), row in sorted(self.rows.items())
        ]
