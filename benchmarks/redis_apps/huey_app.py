"""The Huey side of ``bench_redis.py``: ``RedisHuey`` (blocking dequeue, its default).

The consumer imports this module (``huey_consumer huey_app.huey``); the
benchmark calls :func:`make_huey`. A task returning ``None`` stores no result.

``BENCH_REDIS_URL``  the Redis server
``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os
from typing import Any

from _marks import mark, record
from huey import RedisHuey


def make_huey(url: str) -> tuple[RedisHuey, Any, Any]:
    """The Huey instance, its no-op task and its latency task (``latency(sent)``)."""
    huey = RedisHuey("bench", url=url)

    @huey.task(name="noop")
    def noop() -> None:
        mark()

    @huey.task(name="latency")
    def latency(sent: float) -> None:
        record(sent)

    return huey, noop, latency


if "BENCH_REDIS_URL" in os.environ:
    huey, noop, latency = make_huey(os.environ["BENCH_REDIS_URL"])
