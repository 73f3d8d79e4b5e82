"""The celeriac side of ``bench_canvas.py``: a Redis broker, a Redis result backend, a no-op task.

The worker imports this module (``celeriac worker -A canvas_celeriac_app:app``) and
builds the app from environment variables; the benchmark calls :func:`make_app`
with the same values to send. Unlike ``celeriac_app.py`` the task keeps its result
(the canvas waits on results), and it takes any arguments: a chain step receives the
previous step's return value, a chord body the list of the members' values.

``BENCH_REDIS_URL``   the broker, ``redis://127.0.0.1:PORT/0``
``BENCH_RESULT_URL``  the result backend, another server (its commands are counted alone)
"""

from __future__ import annotations

import os
from typing import Any

from celeriac import Celeriac, Task


def make_app(broker: str, backend: str) -> tuple[Celeriac, Task]:
    """The app and its no-op task."""
    app = Celeriac("canvas_celeriac_app", broker=broker)
    app.conf.update(result_backend=backend)

    @app.task(name="bench.canvas_noop")
    def noop(*args: Any, **kwargs: Any) -> None:
        return None

    return app, noop


if "BENCH_REDIS_URL" in os.environ:
    app, noop = make_app(os.environ["BENCH_REDIS_URL"], os.environ["BENCH_RESULT_URL"])
