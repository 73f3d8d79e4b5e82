"""Warm shutdown hands a child's prefetched messages back when the stop begins, not
after its running task: another worker can start them at once."""

from __future__ import annotations

import signal

import pytest

from tests.process.harness import wait_until

pytestmark = pytest.mark.process

SHORT = 4


def test_warm_shutdown_hands_prefetched_messages_back_while_the_running_task_goes_on(
    on_broker, workers, runs, tmp_path
):
    app = on_broker
    release = tmp_path / "release"
    long = app.send_task("hold", ["long", str(release), 10.0])
    app.tasks["run"].apply_many([(f"short{i}",) for i in range(SHORT)])
    worker = workers("-c", "1", "--prefetch-multiplier", "8").wait_ready(1)
    runs.wait(1, "long")
    wait_until(
        lambda: app.broker.queue_length("celery").ready == 0, 5, "the child to prefetch the short tasks"
    )

    worker.send(signal.SIGTERM)
    wait_until(
        lambda: app.broker.queue_length("celery").ready == SHORT,
        2,
        f"the {SHORT} prefetched tasks back in the queue while the long task runs",
    )
    assert not long.ready(), "the running task goes on"
    assert worker.proc.poll() is None

    release.touch()
    assert worker.wait_exit() == 0
    assert long.get(timeout=10) == "released"
    assert long.state == "SUCCESS"
    assert runs.count() == 1, "no prefetched task ran on the stopping worker"
    assert app.broker.queue_length("celery").ready == SHORT
    # handed back, not requeued: they never ran, so no delivery counts and none is redelivered
    back: list = []
    wait_until(
        lambda: back.extend(app.broker.fetch(["celery"], SHORT, 0.2, "checker")) or len(back) >= SHORT,
        5,
        "the handed-back tasks",
    )
    assert [d.deliveries for d in back] == [1] * SHORT
