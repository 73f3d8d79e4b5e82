"""What the monitor must see of celeriac workers on any broker: their runs, the queue drain,
their children and the Prometheus counters."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from celeriac.observe import promexport
from celeriac.observe.history import History
from celeriac.observe.monitor import Monitor, QueueView
from tests.process.harness import Runs, wait_until


def monitor_sees_the_runs_of_celeriac_workers(app: Any, workers: Any, runs: Runs) -> None:
    workers("-c", "2", "-n", "watched@%h").wait_ready(2)
    monitor = Monitor(app, History(":memory:"), interval=0.1, sinks={})
    try:
        monitor.sample()  # the worker is a baseline: it ran nothing yet
        app.tasks["run"].apply_many([(f"m{i}",) for i in range(40)])
        app.send_task("fail", ["boom"])
        runs.wait(41)

        def celery() -> QueueView:
            return next(q for q in monitor.sample().queues if q.name == "celery")

        view = wait_until(
            lambda: (v := celery()).finished == 41 and v.length == 0 and v, 20, "41 runs seen by the monitor"
        )
        assert view.failed == 1
        assert view.processes == 2 and view.consumers[0].startswith("watched@")
        assert view.service_rate is not None and view.service_rate > 0
        (node,) = [n for n in monitor.current().nodes if n.node.startswith("watched@")]
        assert len(node.children) == 2 and all(c.rss_kib for c in node.children)
        text = promexport.render(promexport.registry_for(monitor.current)).decode()
        totals = {
            (s.labels["task"], s.labels["state"]): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "celeriac_tasks"
            for s in family.samples
            if s.labels.get("queue") == "celery"
        }
        assert totals[("run", "succeeded")] == 40 and totals[("fail", "failed")] == 1
    finally:
        monitor.close()
