"""Worker heartbeat records: what every output reads, round-tripped through JSON."""

from __future__ import annotations

import orjson

from celeriac.observe.records import (
    ChildExit,
    ChildStats,
    ExitReason,
    MemoryReport,
    TaskMemory,
    Verdict,
    WorkerStats,
)


def stats() -> WorkerStats:
    return WorkerStats(
        node="celeriac@host",
        pid=4242,
        started_at=1000.0,
        at=1010.5,
        queues=["celery", "transient"],
        concurrency=2,
        prefetch="auto (now 8)",
        master_rss_kib=30_000,
        tasks=17,
        failed=1,
        children=[
            ChildStats(0, 5000, 1000.1, ready_s=0.05, tasks=10, running="proj.add", running_for_s=0.2),
            ChildStats(1, 5001, 1000.1, tasks=7, rss_kib=40_000, uss_kib=12_000),
        ],
        exits={"max-tasks": 2},
        recent_exits=[
            ChildExit(0, 4999, ExitReason.MAX_MEMORY, "uss 300000 KiB > 200000 KiB", 5, 9.5, 1009.0)
        ],
    )


def test_heartbeat_round_trips_through_json():
    original = stats()
    assert WorkerStats.from_json(original.to_json()) == original


def test_exit_reason_comes_back_as_the_enum():
    revived = WorkerStats.from_json(stats().to_json())
    assert revived.recent_exits[0].reason is ExitReason.MAX_MEMORY


def test_heartbeat_is_plain_json_with_readable_reasons():
    payload = orjson.loads(stats().to_json())
    assert payload["recent_exits"][0]["reason"] == "max-memory"
    assert payload["children"][0]["running"] == "proj.add"
    assert payload["state"] == "running"


def test_exit_reasons_are_distinct_strings():
    values = [reason.value for reason in ExitReason]
    assert len(values) == len(set(values))
    assert ExitReason("crashed") is ExitReason.CRASHED


def test_memory_report_round_trips_with_its_verdicts():
    original = stats()
    original.memory = MemoryReport(
        master_uss_kib=9000,
        master_anon_kib=15000,
        master_trend_kib_per_hour=12.5,
        master_growing=False,
        master_window_s=600.0,
        starts=4,
        start_median_s=0.05,
        start_max_s=0.07,
        recycle_cost=0.01,
        max_tasks_per_child=100,
        max_memory_per_child_kib=200_000,
        max_memory_per_child_hard_kib=None,
        tasks=[
            TaskMemory(
                "proj.leak",
                40,
                0.01,
                0.02,
                40,
                1024.0,
                1100,
                40960,
                0,
                36,
                36864,
                36,
                2,
                0,
                Verdict.LEAK,
                "kept",
            )
        ],
        warnings=["recycling costs 12%"],
    )
    revived = WorkerStats.from_json(original.to_json())
    assert revived == original
    assert revived.memory is not None and revived.memory.tasks[0].verdict is Verdict.LEAK
    assert orjson.loads(original.to_json())["memory"]["tasks"][0]["verdict"] == "leak"
