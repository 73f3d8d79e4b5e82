"""The celeriac side of ``bench_rabbitmq.py``: a RabbitMQ-broker app with a no-op task.

The worker imports this module (``celeriac worker -A celeriac_app:app``) and
builds the app from environment variables; the benchmark calls :func:`make_app`
with the same values to send tasks.

``BENCH_AMQP_URL``   the broker, ``amqp://guest:guest@127.0.0.1:5672/celeriac-bench``
``BENCH_QUEUE``      ``celery`` (durable queue, persistent messages) or ``transient``
                     (``Queue("transient", durable=False)``: transient messages)
``BENCH_ACKS_LATE``  ``1`` for ``task_acks_late=True``
``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os

# the very app of bench_redis.py: only the broker URL differs
from redis_apps.celeriac_app import QUEUES, make_app

__all__ = ["QUEUES", "make_app"]

if "BENCH_AMQP_URL" in os.environ:
    app, noop, latency = make_app(
        os.environ["BENCH_AMQP_URL"],
        os.environ.get("BENCH_QUEUE", "celery"),
        os.environ.get("BENCH_ACKS_LATE") == "1",
    )
