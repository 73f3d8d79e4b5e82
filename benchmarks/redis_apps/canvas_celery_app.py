"""The Celery side of ``bench_canvas.py``: Celery's defaults on Redis, its Redis result backend.

The worker imports this module (``celery -A canvas_celery_app worker``); the benchmark
calls :func:`make_app` with the same values to send. The no-op task keeps its result
and takes any arguments (a chain step gets the previous value, a chord body the list).

``BENCH_REDIS_URL``   the broker
``BENCH_RESULT_URL``  the result backend, another server (its commands are counted alone)
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery


def make_app(broker: str, backend: str) -> tuple[Celery, Any]:
    """The app and its no-op task."""
    app = Celery("canvas_celery_app", broker=broker, backend=backend)

    @app.task(name="bench.canvas_noop")
    def noop(*args: Any, **kwargs: Any) -> None:
        return None

    return app, noop


if "BENCH_REDIS_URL" in os.environ:
    app, noop = make_app(os.environ["BENCH_REDIS_URL"], os.environ["BENCH_RESULT_URL"])
