"""``/metrics``: the monitor's last sample in the Prometheus exposition format.

Built with prometheus-client as a custom collector: every scrape reads the
monitor's current state, so the figures are those of the dashboard. Names
follow Prometheus conventions (base units, ``_total`` for counters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from celeriac.observe.monitor import QUEUE_STATES, MonitorState
from celeriac.observe.records import RUNTIME_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_OUTCOMES = ("succeeded", "failed", "retried", "other")
_STATES = ("ready", "scheduled", "reserved", "running")


class StateCollector(Collector):
    """Yields the metrics of whatever ``current()`` returns at scrape time."""

    def __init__(self, current: Callable[[], MonitorState]) -> None:
        self.current = current

    def collect(self) -> Iterator[Metric]:
        state = self.current()
        yield from _queue_metrics(state)
        yield from _task_metrics(state)
        yield from _worker_metrics(state)
        alerts = GaugeMetricFamily(
            "celeriac_alert_active", "Alerts active now (1 per alert)", labels=["queue", "kind", "level"]
        )
        for alert in state.alerts:
            alerts.add_metric([alert["queue"] or "", alert["kind"], alert["level"]], 1)
        yield alerts
        yield GaugeMetricFamily(
            "celeriac_monitor_sample_duration_seconds", "How long the last sample took", value=state.sample_s
        )


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _queue_metrics(state: MonitorState) -> Iterator[Metric]:
    length = _gauge("celeriac_queue_length", "Messages not yet finished (every state)", ["queue"])
    messages = _gauge("celeriac_queue_messages", "Messages per state", ["queue", "state"])
    age = _gauge(
        "celeriac_queue_oldest_message_age_seconds", "How long the oldest ready message waited", ["queue"]
    )
    arrival = _gauge("celeriac_queue_arrival_rate", "Messages arriving per second (lambda)", ["queue"])
    service = _gauge("celeriac_queue_service_rate", "Messages finished per second (mu)", ["queue"])
    overloaded = _gauge("celeriac_queue_overloaded", "1 while arrivals outrun service", ["queue"])
    states = _gauge(
        "celeriac_queue_state",
        "1 for the queue's state now (ok, growing: will not drain at these rates, overloaded), else 0",
        ["queue", "state"],
    )
    for view in state.queues:
        length.add_metric([view.name], view.length)
        for name in _STATES:
            messages.add_metric([view.name, name], getattr(view, name))
        if view.oldest_age is not None:
            age.add_metric([view.name], view.oldest_age)
        if view.arrival_rate is not None:
            arrival.add_metric([view.name], view.arrival_rate)
        if view.service_rate is not None:
            service.add_metric([view.name], view.service_rate)
        overloaded.add_metric([view.name], int(view.overloaded))
        for name in QUEUE_STATES:
            states.add_metric([view.name, name], int(view.state == name))
    yield from (length, messages, age, arrival, service, overloaded, states)


def _task_metrics(state: MonitorState) -> Iterator[Metric]:
    totals = CounterMetricFamily(
        "celeriac_tasks",
        "Task runs finished since the monitor started, by outcome",
        labels=["queue", "task", "state"],
    )
    runtime = HistogramMetricFamily(
        "celeriac_task_runtime_seconds", "Run time of tasks", labels=["queue", "task"], unit=""
    )
    bounds = [str(b) for b in RUNTIME_BUCKETS] + ["+Inf"]
    for (queue, task), row in sorted(state.tasks.items()):
        for i, outcome in enumerate(_OUTCOMES):
            totals.add_metric([queue, task, outcome], row[i])
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, row[5:], strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        runtime.add_metric([queue, task], buckets, row[4])
    yield from (totals, runtime)


def _worker_metrics(state: MonitorState) -> Iterator[Metric]:
    rss = _gauge(
        "celeriac_worker_rss_bytes", "Resident memory of worker processes", ["node", "role", "child"]
    )
    processes = _gauge("celeriac_worker_processes", "Child processes of a worker node", ["node"])
    prefetch = _gauge(
        "celeriac_worker_prefetch_messages", "Prefetch window in use per child", ["node", "child"]
    )
    in_use = _gauge("celeriac_broker_pool_in_use", "Broker connections in use (worker master)", ["node"])
    waits = CounterMetricFamily(
        "celeriac_broker_pool_waits", "Waits for a free broker connection", labels=["node"]
    )
    waited = CounterMetricFamily(
        "celeriac_broker_pool_wait_seconds", "Time spent waiting for a broker connection", labels=["node"]
    )
    for node in state.nodes:
        if node.state != "running":
            continue
        processes.add_metric([node.node], len(node.children))
        if node.master_rss_kib is not None:
            rss.add_metric([node.node, "master", ""], node.master_rss_kib * 1024)
        for child in node.children:
            if child.rss_kib is not None:
                rss.add_metric([node.node, "child", str(child.index)], child.rss_kib * 1024)
            if child.prefetch is not None:
                prefetch.add_metric([node.node, str(child.index)], child.prefetch)
        pool: dict[str, Any] | None = node.broker_pool
        if pool:
            in_use.add_metric([node.node], pool.get("in_use", 0))
            waits.add_metric([node.node], pool.get("waits", 0))
            waited.add_metric([node.node], pool.get("wait_total_s", 0.0))
    yield from (rss, processes, prefetch, in_use, waits, waited)


def registry_for(current: Callable[[], MonitorState]) -> CollectorRegistry:
    """A registry holding only the monitor's metrics (no process metrics of the monitor itself)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(current))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The exposition text of a scrape."""
    return generate_latest(registry)
