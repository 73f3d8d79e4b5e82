"""``Reject(requeue=True)`` in real workers: the message comes back as a redelivery, so
Celery's "requeue once, then reject when redelivered" pattern runs its task twice, and a
task that always requeues stops at ``task_delivery_limit`` instead of holding its child's
only prefetch slot for ever."""

from __future__ import annotations

import pytest

from celeriac.errors import DeadLetteredError
from tests.process.harness import wait_until

pytestmark = pytest.mark.process


def test_requeued_task_is_redelivered_and_bounded_and_the_tasks_behind_it_run(on_broker, workers, runs):
    app = on_broker
    once = app.send_task("requeue_once", ["once"])
    always = app.send_task("requeue_always", ["always"])
    behind = app.send_task("run", ["behind"])
    workers("-c", "1", "--prefetch-multiplier", "1", CELERIAC_TASK_DELIVERY_LIMIT="3").wait_ready(1)

    assert behind.get(timeout=20)
    with pytest.raises(DeadLetteredError, match="rejected by the task: no reason"):
        once.get(timeout=20)
    with pytest.raises(DeadLetteredError, match="requeued 3 times.*task_delivery_limit=3"):
        always.get(timeout=20)
    assert runs.count("once") == 2, "delivered again once, then seen as redelivered"
    assert runs.count("always") == 3
    assert runs.count("behind") == 1
    wait_until(lambda: app.broker.queue_length("celery").total == 0, 10, "the queue to empty")
    reasons = [letter.reason for letter in app.broker.dead_letters(queue="celery")]
    assert len(reasons) == 2 and "rejected by the task: no reason" in reasons
