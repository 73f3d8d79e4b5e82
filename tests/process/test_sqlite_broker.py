"""The embedded broker under real load: many processes on one file, latency, ETA, crashes."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

from tests.process.harness import HERE, wait_until

pytestmark = pytest.mark.process

PRODUCER = """
import sys
sys.path.insert(0, {here!r})
import proc_app
proc_app.app.tasks["run"].apply_many([("p{n}-%d" % i,) for i in range(500)])
for i in range(500, 1000):
    proc_app.app.tasks["run"].delay("p{n}-%d" % i)
"""


def test_many_producers_and_two_worker_nodes_share_one_file(app, env, workers, runs):
    workers("-c", "2", "-n", "one@%h").wait_ready(2)
    workers("-c", "2", "-n", "two@%h").wait_ready(2)
    producers = [
        subprocess.Popen([sys.executable, "-c", PRODUCER.format(here=str(HERE), n=n)], env=env)
        for n in range(4)
    ]
    try:
        assert [p.wait(60) for p in producers] == [0, 0, 0, 0]
    finally:
        for p in producers:
            p.kill()
    runs.wait(4000, timeout=60)
    counts = runs.per_label()
    assert len(counts) == 4000 and set(counts.values()) == {1}
    assert len({pid for _, pid, _ in runs.entries()}) == 4, "all four children of both nodes served"


def test_an_idle_worker_starts_a_new_task_within_50_ms(app, workers, runs):
    workers("-c", "1").wait_ready(1)
    app.send_task("run", ["warm-up"]).get(timeout=10)
    latencies = []
    for i in range(15):
        time.sleep(0.03 + 0.01 * (i % 3))  # let the child go idle between samples
        sent = time.time()
        started = app.send_task("started_at", [f"lat{i}"]).get(timeout=10)
        latencies.append(started - sent)
    assert statistics.median(latencies) < 0.05, latencies
    assert max(latencies) < 0.2, latencies


def test_countdown_task_does_not_run_before_it_is_due_and_holds_no_lease(app, workers, runs):
    workers("-c", "1").wait_ready(1)
    sent = time.time()
    result = app.send_task("started_at", ["later"], countdown=1.0)
    length = app.broker.queue_length("celery")
    assert (length.scheduled, length.reserved) == (1, 0)
    started = result.get(timeout=10)
    assert started - sent >= 1.0
    assert started - sent < 1.5


def test_prefetch_window_is_never_exceeded(app, workers, runs):
    app.tasks["run"].apply_many([(f"p{i}", 0.005) for i in range(200)])
    workers("-c", "2", "--prefetch-multiplier", "3").wait_ready(2)
    peak = 0
    while runs.count() < 200:
        peak = max(peak, app.broker.queue_length("celery").reserved)
    assert 0 < peak <= 2 * 3


def test_durable_messages_survive_kill_9_of_every_worker_process(app, workers, runs):
    app.tasks["run"].apply_many([(f"d{i}", 0.01) for i in range(200)])
    app.tasks["run"].apply_many([(f"t{i}", 0.01) for i in range(50)], queue="transient")
    lease = {"CELERIAC_TASK_ACKS_LATE": "true", "CELERIAC_BROKER_LEASE_TIMEOUT": "1"}
    worker = workers("-c", "2", **lease).wait_ready(2)
    runs.wait(20)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.proc.wait(10)
    workers("-c", "2", **lease).wait_ready(2)
    wait_until(lambda: len(runs.per_label()) == 250, 30, "every task to have run at least once")
    wait_until(
        lambda: app.broker.queue_length("celery").total + app.broker.queue_length("transient").total == 0,
        10,
        "every message to be acked",
    )


def test_transient_route_uses_the_transient_store(app, workers, runs):
    from celeriac import Exchange, Queue

    app.conf.update(
        task_queues=(
            Queue("celery"),
            Queue(
                "transient", Exchange("transient", delivery_mode=1), routing_key="transient", durable=False
            ),
        ),
        task_routes={"run": {"queue": "celery", "delivery_mode": "transient"}},
    )
    app.send_task("run", ["routed"])
    app.send_task("run", ["explicit"], queue="transient")
    broker = app.broker
    assert broker._transient.db.read("SELECT COUNT(*) FROM messages")[0][0] == 2
    assert broker._durable.db.read("SELECT COUNT(*) FROM messages")[0][0] == 0
    workers("-c", "1", "-Q", "celery,transient").wait_ready(1)
    runs.wait(2)
