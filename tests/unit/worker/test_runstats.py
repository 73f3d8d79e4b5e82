"""Run counts: what a child counts per (queue, task) and what the master adds up for the heartbeat."""

from __future__ import annotations

from celeriac.observe.records import RUNTIME_BUCKETS, TaskRuns, WorkerStats
from celeriac.worker.runstats import RunCounts, RunTable


def test_child_counts_outcomes_and_run_time_buckets_per_queue_and_task():
    counts = RunCounts()
    counts.add("emails", "send", "SUCCESS", 0.0004)
    counts.add("emails", "send", "FAILURE", 0.03)
    counts.add("emails", "send", "RETRY", 0.03)
    counts.add("emails", "send", "REVOKED", 0.0)
    counts.add("reports", "send", "SUCCESS", 400.0)
    rows = {(r[0], r[1]): r[2:] for r in counts.flush()}
    send = rows[("emails", "send")]
    assert send[:4] == [1, 1, 1, 1]
    assert round(send[4], 9) == 0.0604
    buckets = send[5:]
    assert len(buckets) == len(RUNTIME_BUCKETS) + 1
    assert buckets[0] == 2  # 0.4 ms and 0 s: <= 1 ms
    assert buckets[RUNTIME_BUCKETS.index(0.05)] == 2  # 30 ms: <= 50 ms
    assert rows[("reports", "send")][-1] == 1  # over the last bound
    assert counts.flush() == []


def test_master_adds_reports_up_and_publishes_them_in_the_heartbeat():
    table = RunTable()
    for _ in range(2):
        child = RunCounts()
        child.add("q", "t", "SUCCESS", 0.002)
        child.add("q", "t", "FAILURE", 0.2)
        table.merge(child.flush())
    table.merge([["q", "t", 1], "junk"])  # malformed rows are skipped
    (runs,) = table.records()
    assert (runs.queue, runs.task, runs.succeeded, runs.failed, runs.finished) == ("q", "t", 2, 2, 4)
    assert runs.runtime_sum_s == 0.404
    stats = WorkerStats("n", 1, 0.0, 0.0, ["q"], 1, "4", None, runs=[runs])
    assert WorkerStats.from_json(stats.to_json()).runs == [
        TaskRuns("q", "t", 2, 2, 0, 0, 0.404, runs.buckets)
    ]
