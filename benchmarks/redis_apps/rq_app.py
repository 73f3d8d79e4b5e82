"""The RQ side of ``bench_redis.py``: the job functions (RQ imports them by dotted name).

``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

from _marks import mark, record


def noop() -> None:
    mark()


def latency(sent: float) -> None:
    record(sent)
