"""The Celery side of ``bench_rabbitmq.py``: Celery on RabbitMQ (py-amqp), a no-op task.

The worker imports this module (``celery -A celery_app worker``); the benchmark
calls :func:`make_app` to send. No result backend is configured and the tasks
ignore results, so nothing but the task messages (and the worker's own events,
mingle and gossip, Celery's defaults) touches RabbitMQ.

``BENCH_AMQP_URL``  the broker
``BENCH_QUEUE``     ``celery`` (Celery's defaults: durable queue ``celery``, persistent
                    messages) or ``transient``: the queue below as the default queue, and
                    ``task_default_delivery_mode='transient'``
``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os
from typing import Any

from _marks import mark, record
from celery import Celery
from kombu import Exchange, Queue

#: A non-durable queue on its own exchange, whose messages are transient (delivery_mode 1).
TRANSIENT = Queue("transient", Exchange("transient", delivery_mode=1), routing_key="transient", durable=False)


def make_app(url: str, queue: str = "celery") -> tuple[Celery, Any, Any]:
    """The app, its no-op task and its latency task (``latency(sent)``)."""
    app = Celery("celery_app", broker=url)
    if queue == "transient":
        app.conf.update(
            task_queues=[TRANSIENT], task_default_queue="transient", task_default_delivery_mode="transient"
        )

    @app.task(name="bench.noop", ignore_result=True)
    def noop() -> None:
        mark()

    @app.task(name="bench.latency", ignore_result=True)
    def latency(sent: float) -> None:
        record(sent)

    return app, noop, latency


if "BENCH_AMQP_URL" in os.environ:
    app, noop, latency = make_app(os.environ["BENCH_AMQP_URL"], os.environ.get("BENCH_QUEUE", "celery"))
