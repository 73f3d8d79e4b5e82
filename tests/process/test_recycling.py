"""Children replaced by task count, by memory, and at the hard time limit; the soft limit."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from celeriac.errors import TimeLimitExceeded

pytestmark = pytest.mark.process


def test_max_tasks_per_child_replaces_children_every_n_tasks(app, workers, runs):
    app.tasks["run"].apply_many([(f"r{i}",) for i in range(20)])
    worker = workers("-c", "1", "--max-tasks-per-child", "5", "--prefetch-multiplier", "1").wait_ready(1)
    runs.wait(20)
    per_child = Counter(pid for _, pid, _ in runs.entries())
    assert sorted(per_child.values()) == [5, 5, 5, 5]
    worker.wait_for(r"exited after 5 tasks: max-tasks: ran 5 tasks \(worker_max_tasks_per_child=5\)", count=3)


def test_child_over_its_memory_limit_is_recycled_after_the_task_and_the_next_task_runs(app, workers, runs):
    worker = workers("-c", "1", "--max-memory-per-child", str(40 * 1024)).wait_ready(1)
    fat = app.send_task("hog", ["fat", 64])
    next_one = app.send_task("run", ["next"])
    fat_pid = fat.get(timeout=20)
    assert next_one.get(timeout=20) != fat_pid, "the next task ran in the replacement child"
    (match,) = worker.wait_for(
        r"pid (\d+)\) exited after 1 tasks: max-memory: "
        r"own memory \(USS\) (\d+) KiB > worker_max_memory_per_child=40960 KiB"
    )
    assert int(match.group(1)) == fat_pid
    assert int(match.group(2)) > 64 * 1024


def test_memory_limit_compares_own_memory_not_what_the_master_shares(app, workers, runs):
    # the limit is above one child's own memory but below its RSS: no recycling
    worker = workers("-c", "1", "--max-memory-per-child", "15000").wait_ready(1)
    results = app.tasks["run"].apply_many([(f"m{i}",) for i in range(30)])
    pids = {r.get(timeout=20) for r in results}
    assert len(pids) == 1
    assert "max-memory" not in worker.log()


def test_hard_time_limit_kills_the_child_fails_the_task_and_a_new_child_serves(app, workers, runs):
    worker = workers("-c", "1", CELERIAC_TASK_TIME_LIMIT="0.5").wait_ready(1)
    slow = app.send_task("run", ["slow", 30])
    with pytest.raises(TimeLimitExceeded, match="hard time limit of 0.5 s"):
        slow.get(timeout=20)
    worker.wait_for(r"exited after 0 tasks: hard-time-limit")
    assert app.send_task("run", ["after"]).get(timeout=20)
    pids = [pid for _, pid, _ in runs.entries()]
    assert pids[0] != pids[1]


def test_soft_time_limit_raises_inside_the_task(app, workers, runs):
    workers("-c", "1").wait_ready(1)
    assert app.send_task("soft", ["soft"]).get(timeout=20) == "stopped at the soft limit"


def test_time_limit_from_apply_async_overrides_the_setting(app, workers, runs):
    workers("-c", "1").wait_ready(1)
    slow = app.send_task("run", ["slow", 30], time_limit=0.3)
    with pytest.raises(TimeLimitExceeded):
        slow.get(timeout=20)
    assert re.search(r"0.3", str(slow.result))
