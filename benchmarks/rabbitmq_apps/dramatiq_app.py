"""The Dramatiq side of ``bench_rabbitmq.py``: its ``RabbitmqBroker`` (pika) with default middleware.

The worker imports this module (``dramatiq dramatiq_app``), which builds the
broker and makes it the global one; the benchmark calls :func:`make_broker`.
Dramatiq's queues are durable and its messages persistent; publisher confirms
are off (its default).

``BENCH_AMQP_URL``  the broker
``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from _marks import mark, record
from dramatiq.brokers.rabbitmq import RabbitmqBroker


def make_broker(url: str) -> tuple[RabbitmqBroker, Any, Any]:
    """The broker (set as Dramatiq's global broker), its no-op actor and its latency actor."""
    broker = RabbitmqBroker(url=url)
    dramatiq.set_broker(broker)

    @dramatiq.actor(broker=broker, actor_name="noop")
    def noop() -> None:
        mark()

    @dramatiq.actor(broker=broker, actor_name="latency")
    def latency(sent: float) -> None:
        record(sent)

    return broker, noop, latency


if "BENCH_AMQP_URL" in os.environ:
    broker, noop, latency = make_broker(os.environ["BENCH_AMQP_URL"])
