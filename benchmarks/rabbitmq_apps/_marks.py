"""Completion marks for the apps of ``bench_rabbitmq.py``: the very ones of ``bench_redis.py``.

``mark()`` appends one byte to ``$BENCH_DONE_FILE``, ``record(sent)`` appends
``(sent, time.time())`` to ``$BENCH_STAMP_FILE`` (see ``redis_apps/_marks.py``), so
both benchmarks count completions and time latencies the same way. The benchmark
puts ``benchmarks/`` on the workers' ``PYTHONPATH`` for this import.
"""

from __future__ import annotations

from redis_apps._marks import RECORD, mark, record

__all__ = ["RECORD", "mark", "record"]
