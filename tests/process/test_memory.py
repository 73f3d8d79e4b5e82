"""Memory with real worker processes: leaks named per task, recycling by memory, the hard
ceiling, what child starts cost, and a master that stays flat."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import psutil
import pytest

from celeriac.errors import WorkerLostError
from celeriac.observe.records import ExitReason, MemoryReport, Verdict, WorkerStats
from celeriac.worker.memwatch import RECYCLE_COST_WARN
from tests.process.harness import ROOT, wait_until

pytestmark = pytest.mark.process


def heartbeat(app, until: Callable[[WorkerStats], object], timeout: float = 30.0) -> WorkerStats:
    """The first heartbeat of the (only) live node for which ``until`` holds."""

    def find() -> WorkerStats | None:
        for raw in app.broker.node_stats():
            stats = WorkerStats.from_json(raw.payload)
            if stats.state == "running" and stats.memory is not None and until(stats):
                return stats
        return None

    found = wait_until(find, timeout, "a heartbeat that shows it")
    assert isinstance(found, WorkerStats)
    return found


def tasks_of(stats: WorkerStats) -> dict:
    memory = stats.memory
    assert isinstance(memory, MemoryReport)
    return {task.name: task for task in memory.tasks}


def runs_of(name: str, count: int) -> Callable[[WorkerStats], bool]:
    return lambda stats: name in tasks_of(stats) and tasks_of(stats)[name].runs >= count


def test_report_names_the_leaking_task_and_calls_a_one_off_spike_a_high_water_mark(app, env, workers):
    workers("-c", "1", "--prefetch-multiplier", "1").wait_ready(1)
    results = []
    for i in range(12):
        results.append(app.send_task("leak", [f"leak{i}", 1024]))
        results.append(app.send_task("spike", [f"spike{i}", 64]))
    for result in results:
        result.get(timeout=30)
    stats = heartbeat(app, lambda s: runs_of("leak", 12)(s) and runs_of("spike", 12)(s))
    tasks = tasks_of(stats)
    leak, spike = tasks["leak"], tasks["spike"]
    assert leak.verdict is Verdict.LEAK, leak
    assert spike.verdict is Verdict.HIGH_WATER, spike
    # the leak kept about 1 MiB a run after its two warm-up runs; the spike raised the peak by
    # its 64 MiB once and kept (almost) nothing
    assert 9 * 1024 <= leak.late_growth_kib <= 12 * 1024
    assert leak.late_steps >= 9
    assert spike.peak_raise_max_kib >= 60 * 1024
    assert spike.late_growth_kib < 1024
    assert stats.memory is not None and stats.memory.tasks[0].name == "leak", "leaks are listed first"

    text = subprocess.run(
        [sys.executable, "-m", "celeriac", "inspect", "memory", "-A", "proc_app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert re.search(r"^  leak\s+12 .* LEAK$", text, re.MULTILINE), text
    assert re.search(r"^  spike\s+12 .* high-water$", text, re.MULTILINE), text
    assert "memory it does not give back" in text
    assert "a high-water mark, not a leak" in text


def test_child_over_max_memory_is_recycled_after_its_task_with_the_result_kept(app, workers):
    workers("-c", "1", "--max-memory-per-child", str(40 * 1024)).wait_ready(1)
    fat = app.send_task("hog", ["fat", 64])
    fat_pid = fat.get(timeout=20)
    assert fat.state == "SUCCESS"
    stats = heartbeat(app, lambda s: s.exits.get(ExitReason.MAX_MEMORY.value) == 1)
    (exit_record,) = [e for e in stats.recent_exits if e.reason is ExitReason.MAX_MEMORY]
    assert exit_record.pid == fat_pid
    assert exit_record.tasks == 1
    assert "worker_max_memory_per_child=40960 KiB after 1 tasks, the last one hog" in exit_record.detail
    assert tasks_of(stats)["hog"].recycles == 1
    assert app.send_task("run", ["after"]).get(timeout=20) != fat_pid


def test_hard_ceiling_stops_a_child_mid_task_and_fails_the_task_with_the_reason(app, workers):
    worker = workers("-c", "1", "--max-memory-per-child-hard", str(100 * 1024)).wait_ready(1)
    balloon = app.send_task("balloon", ["balloon", 200, 60])
    with pytest.raises(WorkerLostError, match=r"worker_max_memory_per_child_hard=102400 KiB"):
        balloon.get(timeout=30)
    worker.wait_for(
        r"exited after 0 tasks: max-memory-hard: own memory \(USS\) \d+ KiB > .* while running balloon"
    )
    stats = heartbeat(app, lambda s: s.exits.get(ExitReason.MAX_MEMORY_HARD.value) == 1)
    assert tasks_of(stats)["balloon"].hard_kills == 1
    assert app.send_task("run", ["after"]).get(timeout=20)


def test_hard_ceiling_under_acks_late_delivers_the_task_again_until_the_delivery_limit(app, workers, runs):
    worker = workers(
        "-c",
        "1",
        "--max-memory-per-child-hard",
        str(100 * 1024),
        CELERIAC_TASK_ACKS_LATE="true",
        CELERIAC_TASK_DELIVERY_LIMIT="2",
    ).wait_ready(1)
    app.send_task("balloon", ["balloon", 200, 60])
    worker.wait_for(r"exited after 0 tasks: max-memory-hard", count=2)
    wait_until(lambda: app.broker.dead_letter_count() == 1, 20, "the task in the dead letters")
    assert runs.count("balloon") == 2
    (letter,) = app.broker.dead_letters()
    assert "worker_max_memory_per_child_hard=102400 KiB while running balloon" in letter.reason
    assert "(delivered 2 times)" in letter.reason


def test_slow_starting_children_recycled_every_task_trigger_the_capacity_warning(app, workers):
    worker = workers("-c", "1", "--max-tasks-per-child", "1", PROC_SLOW_IMPORT_S="0.4").wait_ready(1)
    results = app.tasks["run"].apply_many([(f"r{i}",) for i in range(6)])
    for result in results:
        result.get(timeout=30)
    (match,) = worker.wait_for(
        r"recycling costs (\d+)% of child capacity: a new child takes ([\d.]+) s to be ready .* "
        r"at most (\d+) tasks a minute\. Set worker_max_tasks_per_child to at least (\d+) \(now 1\)"
    )
    cost, start, per_minute, suggested = (float(g) for g in match.groups())
    assert cost > 10
    assert 0.4 <= start < 2.0, "the measured start includes the 0.4 s import"
    assert per_minute <= 60 / 0.4
    assert suggested >= 9
    stats = heartbeat(app, lambda s: s.memory is not None and s.memory.starts >= 6)
    assert stats.memory is not None and stats.memory.start_median_s is not None
    assert stats.memory.start_median_s >= 0.4
    assert len(stats.memory.warnings) == 1 and "recycling costs" in stats.memory.warnings[0]
    assert len(re.findall("recycling costs", worker.log())) == 1, "warned once"


def test_fast_children_recycled_every_100_tasks_give_no_warning(app, workers):
    # 100 tasks of 10 ms against a start of some 20-40 ms (a loaded machine): a few per cent
    worker = workers("-c", "1", "--max-tasks-per-child", "100").wait_ready(1)
    results = app.tasks["run"].apply_many([(f"r{i}", 0.010) for i in range(300)])
    for result in results:
        result.get(timeout=30)
    stats = heartbeat(app, lambda s: s.exits.get(ExitReason.MAX_TASKS.value, 0) >= 3)
    assert stats.memory is not None and stats.memory.recycle_cost is not None
    assert stats.memory.recycle_cost < RECYCLE_COST_WARN
    assert "recycling costs" not in worker.log()


def anon_kib(pid: int) -> int:
    """Anonymous resident memory of ``pid`` (RSS without mapped files: heap, stacks)."""
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon:"))


#: Growth of the master's heap allowed between 5,000 and 50,000 tasks. The master does no
#: per-task work (children send their memory tallies once a second; task counts live in shared
#: memory) and its per-task-name and per-child state is bounded, so what is left is allocator
#: noise, less than one pymalloc arena (1 MiB on 64-bit CPython). Its RSS also counts pages of the broker
#: file that SQLite maps into memory, which grow with the file and are page cache, not heap.
MASTER_HEAP_GROWTH_BOUND_KIB = 512


def test_master_memory_stays_flat_over_50000_tasks(app, workers):
    worker = workers("-c", "2", "--prefetch-multiplier", "16").wait_ready(2)
    master = psutil.Process(worker.pid)
    noop = app.tasks["noop"]

    def drained() -> bool:
        return app.broker.queue_length("celery").total == 0

    noop.apply_many([()] * 5000)
    wait_until(drained, 60, "the first 5,000 tasks to drain")
    warm, warm_rss = anon_kib(worker.pid), master.memory_info().rss // 1024
    for _ in range(9):
        noop.apply_many([()] * 5000)
    wait_until(drained, 120, "50,000 tasks to drain")
    stats = heartbeat(app, lambda s: s.tasks >= 50_000)
    end, end_rss = anon_kib(worker.pid), master.memory_info().rss // 1024
    print(
        f"master after 5,000 and 50,000 tasks: heap {warm} -> {end} KiB ({end - warm:+d} KiB), "
        f"RSS {warm_rss} -> {end_rss} KiB ({end_rss - warm_rss:+d} KiB)"
    )
    assert end - warm <= MASTER_HEAP_GROWTH_BOUND_KIB
    assert stats.memory is not None and stats.memory.master_anon_kib is not None
    assert tasks_of(stats)["noop"].verdict is not Verdict.LEAK


def test_chunks_are_reported_under_their_inner_task(app, workers):
    workers("-c", "1").wait_ready(1)
    app.tasks["run"].chunks([(f"c{i}",) for i in range(30)], 10).apply_async().get(timeout=30)
    stats = heartbeat(app, runs_of("run (chunks)", 3))
    assert "celery.starmap" not in tasks_of(stats)
