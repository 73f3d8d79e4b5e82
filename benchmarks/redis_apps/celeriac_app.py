"""The celeriac side of ``bench_redis.py`` and ``bench_memory.py``: a Redis-broker app, a no-op task.

The worker imports this module (``celeriac worker -A celeriac_app:app``) and
builds the app from environment variables; the benchmark calls :func:`make_app`
with the same values to send tasks.

``BENCH_REDIS_URL``  the broker, ``redis://127.0.0.1:PORT/0``
``BENCH_QUEUE``      ``celery`` (durable) or ``transient`` (``Queue("transient", durable=False)``)
``BENCH_ACKS_LATE``  ``1`` for ``task_acks_late=True``
``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os

from _marks import mark, record

from celeriac import Celeriac, Queue, Task

QUEUES = (Queue("celery"), Queue("transient", durable=False))


def make_app(url: str, queue: str, acks_late: bool) -> tuple[Celeriac, Task, Task]:
    """The app, its no-op task and its latency task (``latency(sent)``)."""
    app = Celeriac("celeriac_app", broker=url)
    app.conf.update(task_queues=list(QUEUES), task_default_queue=queue, task_acks_late=acks_late)

    @app.task(name="bench.noop", ignore_result=True)
    def noop() -> None:
        mark()

    @app.task(name="bench.latency", ignore_result=True)
    def latency(sent: float) -> None:
        record(sent)

    return app, noop, latency


if "BENCH_REDIS_URL" in os.environ:
    app, noop, latency = make_app(
        os.environ["BENCH_REDIS_URL"],
        os.environ.get("BENCH_QUEUE", "celery"),
        os.environ.get("BENCH_ACKS_LATE") == "1",
    )
