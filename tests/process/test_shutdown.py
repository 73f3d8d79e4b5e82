"""Warm and cold shutdown, exit codes, and a master that dies under its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.process.harness import wait_until

pytestmark = pytest.mark.process


def test_warm_shutdown_with_full_prefetch_windows_loses_nothing_and_runs_nothing_twice(app, workers, runs):
    app.tasks["run"].apply_many([(f"w{i}", 0.02) for i in range(300)])
    worker = workers("-c", "2", "--prefetch-multiplier", "10").wait_ready(2)
    runs.wait(5)
    wait_until(
        lambda: app.broker.queue_length("celery").reserved > 4, 10, "children holding prefetched messages"
    )
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert app.broker.queue_length("celery").reserved == 0
    worker.wait_for(r"handed \d+ prefetched message\(s\) back")
    ran_before = runs.count()
    assert ran_before < 300
    workers("-c", "2").wait_ready(2)
    runs.wait(300, timeout=60)
    counts = runs.per_label()
    assert len(counts) == 300 and set(counts.values()) == {1}


def test_warm_shutdown_lets_the_running_task_finish(app, workers, runs):
    worker = workers("-c", "1").wait_ready(1)
    result = app.send_task("run", ["long", 1.0])
    runs.wait(1, "long")
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert result.get(timeout=5) == runs.pids("long")[0]


def test_second_sigterm_is_a_cold_shutdown_and_acks_late_tasks_return(app, workers, runs):
    worker = workers("-c", "1", CELERIAC_TASK_ACKS_LATE="true").wait_ready(1)
    result = app.send_task("block", ["cut"])
    runs.wait(1, "cut")
    worker.send(signal.SIGTERM)
    worker.wait_for("warm shutdown")
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 1, "a cold stop that cut a task short exits 1"
    assert "cold shutdown" in worker.log()
    assert app.broker.queue_length("celery").ready == 1, "the interrupted task is back in its queue"
    workers("-c", "1", CELERIAC_TASK_ACKS_LATE="true").wait_ready(1)
    assert result.get(timeout=20) == "second delivery"


def test_sigquit_is_a_cold_shutdown(app, workers, runs):
    worker = workers("-c", "2").wait_ready(2)
    worker.send(signal.SIGQUIT)
    assert worker.wait_exit() == 0, "nothing was running, so nothing was cut short"
    assert "cold shutdown" in worker.log()


def test_children_of_a_dead_master_stop_and_their_leases_expire_for_redelivery(app, workers, runs):
    fast_lease = {"CELERIAC_TASK_ACKS_LATE": "true", "CELERIAC_BROKER_LEASE_TIMEOUT": "1.5"}
    worker = workers("-c", "1", **fast_lease).wait_ready(1)
    result = app.send_task("block", ["orphan", 0.5])
    runs.wait(1, "orphan")
    (child,) = runs.pids("orphan")
    os.kill(worker.pid, signal.SIGKILL)

    def child_gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(child_gone, 10, "the orphaned child to exit on its own")
    # the orphan finished its task before leaving; its late ack went through
    assert result.get(timeout=10) == "slept"
    app.send_task("block", ["unsupervised"])
    os.kill(workers("-c", "1", **fast_lease).wait_ready(1).pid, signal.SIGKILL)
    workers("-c", "1", **fast_lease).wait_ready(1)
    wait_until(lambda: runs.count("unsupervised") >= 1, 20, "the task to be picked up")


def test_unknown_app_module_exits_2_with_a_clear_message():
    proc = subprocess.run(
        [sys.executable, "-m", "celeriac", "worker", "-A", "no_such_module_here"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "cannot import 'no_such_module_here'" in proc.stderr


def test_early_ack_task_of_a_node_killed_whole_is_recorded_by_the_next_master(app, workers, runs):
    lease = {"CELERIAC_BROKER_LEASE_TIMEOUT": "1"}
    worker = workers("-c", "1", **lease).wait_ready(1)
    lost = app.send_task("block", ["lost"])
    app.send_task("run", ["queued-behind"])
    runs.wait(1, "lost")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.proc.wait(10)
    survivor = workers("-c", "1", **lease).wait_ready(1)
    with pytest.raises(Exception, match="worker node running this task died"):
        lost.get(timeout=20)
    runs.wait(1, "queued-behind")
    assert runs.count("lost") == 1, "at most once: the started task is not run again"
    (letter,) = app.broker.dead_letters()
    assert letter.envelope.headers["id"] == lost.id
    survivor.wait_for(r"was running on a worker node that died")
