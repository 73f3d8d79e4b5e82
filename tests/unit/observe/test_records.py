"""Worker heartbeat records: what every output reads, round-tripped through JSON."""

from __future__ import annotations

import orjson

from celeriac.observe.records import ChildExit, ChildStats, ExitReason, WorkerStats


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
