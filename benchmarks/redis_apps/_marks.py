"""Completion marks shared by the apps of ``bench_redis.py``: one O_APPEND descriptor per process.

``mark()`` appends one byte to ``$BENCH_DONE_FILE``; ``record(sent)`` appends two
little-endian doubles, the enqueue time ``sent`` (``time.time()`` in the
benchmark, passed as the task's argument) and ``time.time()`` at the start of
the task body, to ``$BENCH_STAMP_FILE``. The benchmark watches the files' sizes,
so counting completions costs one ``write(2)`` per task and no Redis round
trip, the same for every system. The files are opened lazily, in the process
that runs the task (keyed by pid, so a forked child, such as RQ's work horse,
never writes through its parent's descriptor).
"""

from __future__ import annotations

import os
import struct
import time

RECORD = struct.Struct("<dd")
_FDS: dict[tuple[int, str], int] = {}


def _fd(variable: str) -> int:
    key = (os.getpid(), variable)
    fd = _FDS.get(key)
    if fd is None:
        fd = _FDS[key] = os.open(os.environ[variable], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return fd


def mark() -> None:
    """One task done: append one byte to the completion file."""
    os.write(_fd("BENCH_DONE_FILE"), b"x")


def record(sent: float) -> None:
    """A latency task's body started: append (sent, now) to the stamp file, in one write."""
    started = time.time()
    os.write(_fd("BENCH_STAMP_FILE"), RECORD.pack(sent, started))
