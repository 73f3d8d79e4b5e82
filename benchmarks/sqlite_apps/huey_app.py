"""The Huey side of ``bench_sqlite.py``: ``SqliteHuey`` with a no-op task.

The consumer imports this module (``huey_consumer huey_app.huey``) and builds
the instance from environment variables; the benchmark calls :func:`make_huey`
with the same values to enqueue.

``BENCH_DB``     the SQLite file
``BENCH_FSYNC``  ``1``: ``fsync=True`` (``PRAGMA synchronous=2``, FULL);
                 ``0``: ``fsync=False`` (``PRAGMA synchronous=0``, OFF);
                 unset or ``default``: Huey's default ``fsync=None`` (no PRAGMA:
                 SQLite's compiled-in default applies)
``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os
from typing import Any

from _marks import mark, stamp
from huey import SqliteHuey

FSYNC: dict[str, bool | None] = {"1": True, "0": False, "default": None}


def make_huey(db: str, fsync: bool | None) -> tuple[SqliteHuey, Any, Any]:
    """The Huey instance, its no-op task and its time-stamp task."""
    huey = SqliteHuey("bench", filename=os.path.abspath(db), fsync=fsync)

    @huey.task(name="noop")
    def noop() -> None:
        mark()

    @huey.task(name="stamp")
    def stamp_task() -> None:
        stamp()

    return huey, noop, stamp_task


if "BENCH_DB" in os.environ:
    huey, noop, stamp_task = make_huey(
        os.environ["BENCH_DB"], FSYNC[os.environ.get("BENCH_FSYNC", "default")]
    )
