"""The celeriac side of ``bench_sqlite.py`` and ``bench_memory.py``: a SQLite-broker app, a no-op task.

The worker imports this module (``celeriac worker -A celeriac_app``) and builds
the app from environment variables; the benchmark calls :func:`make_app` with
the same values to send tasks.

``BENCH_DB``             broker database file (results, when stored, go to the same file)
``BENCH_QUEUE``          ``celery`` (durable) or ``transient`` (``durable=False``)
``BENCH_ACKS_LATE``      ``1`` for ``task_acks_late=True``
``BENCH_STORE_RESULTS``  ``1`` to store results (default: ``task_ignore_result=True``)
``BENCH_FSYNC_ALL``      ``1`` for ``broker_transport_options={"fsync": "all"}`` (fsync deliveries
                         and acks too, not only publishes)
``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os

from _marks import mark, stamp

from celeriac import Celeriac, Queue, Task

QUEUES = (Queue("celery"), Queue("transient", durable=False))


def make_app(
    db: str, queue: str, acks_late: bool, store_results: bool = False, fsync_all: bool = False
) -> tuple[Celeriac, Task, Task]:
    """The app, its no-op task and its time-stamp task."""
    app = Celeriac(
        "celeriac_app",
        broker=f"sqlite:///{os.path.abspath(db)}",
        task_queues=list(QUEUES),
        task_default_queue=queue,
        task_acks_late=acks_late,
        task_ignore_result=not store_results,
        broker_transport_options={"fsync": "all"} if fsync_all else {},
    )

    @app.task(name="bench.noop")
    def noop() -> None:
        mark()

    @app.task(name="bench.stamp")
    def stamp_task() -> None:
        stamp()

    return app, noop, stamp_task


if "BENCH_DB" in os.environ:
    app, noop, stamp_task = make_app(
        os.environ["BENCH_DB"],
        os.environ.get("BENCH_QUEUE", "celery"),
        os.environ.get("BENCH_ACKS_LATE") == "1",
        os.environ.get("BENCH_STORE_RESULTS") == "1",
        os.environ.get("BENCH_FSYNC_ALL") == "1",
    )
