"""The Celery side of ``bench_redis.py`` and ``bench_memory.py``: Celery's defaults on Redis, a no-op task.

The worker imports this module (``celery -A celery_app worker``); the benchmark
calls :func:`make_app` to send. No result backend is configured and the tasks
ignore results, so nothing but the messages touches Redis.

``BENCH_REDIS_URL``  the broker
``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os
from typing import Any

from _marks import mark, record
from celery import Celery


def make_app(url: str) -> tuple[Celery, Any, Any]:
    """The app, its no-op task and its latency task (``latency(sent)``)."""
    app = Celery("celery_app", broker=url)

    @app.task(name="bench.noop", ignore_result=True)
    def noop() -> None:
        mark()

    @app.task(name="bench.latency", ignore_result=True)
    def latency(sent: float) -> None:
        record(sent)

    return app, noop, latency


if "BENCH_REDIS_URL" in os.environ:
    app, noop, latency = make_app(os.environ["BENCH_REDIS_URL"])
