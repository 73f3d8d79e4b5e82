"""What the monitor must see of a plain Celery deployment, on any broker both sides share."""

from __future__ import annotations

import json
from typing import Any

from celeriac.observe.history import History
from celeriac.observe.monitor import Monitor, QueueView
from tests.interop.shared_tasks import RECORD
from tests.process.harness import wait_until

CELERY_READY = r"@\S+ ready\."


def monitor_watches_a_plain_celery_deployment(celery_app: Any, celeriac_app: Any, workers: Any) -> None:
    """Celery's producer fills ``celery``; the monitor counts it (CLI and in-process); a stock
    Celery worker drains it and the monitor sees it empty, with no rates it cannot know."""
    record = celery_app.tasks[RECORD]
    for i in range(25):
        record.delay(f"m{i}")
    monitor = Monitor(celeriac_app, History(":memory:"), queues=["celery"], interval=0.1, sinks={})

    def celery_queue() -> QueueView:
        return next(q for q in monitor.sample().queues if q.name == "celery")

    try:
        # Celery publishes without confirms: wait for the broker to hold them all
        wait_until(lambda: celery_queue().ready == 25, 10, "25 ready messages seen by the monitor")
        done = workers.command(
            "monitor", "-A", "shared_tasks:celeriac_app", "-Q", "celery", "--once", "--json"
        )
        assert done.returncode == 0, done.stderr
        (row,) = [q for q in json.loads(done.stdout)["queues"] if q["name"] == "celery"]
        assert (row["length"], row["ready"]) == (25, 25)
        workers.celery("-c", "1").wait_for(CELERY_READY, timeout=60)
        drained = wait_until(
            lambda: (v := celery_queue()).length == 0 and v, 60, "the Celery worker to drain it"
        )
        # no celeriac heartbeat: lengths and growth only, never a made-up rate
        assert drained.service_rate is None and drained.arrival_rate is None
        assert drained.growth_rate is not None and drained.growth_rate < 0
        assert monitor.current().nodes == []
    finally:
        monitor.close()
