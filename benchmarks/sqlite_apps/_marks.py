"""Completion marks shared by the benchmark apps: one O_APPEND file descriptor per process.

``mark()`` appends one byte to ``$BENCH_DONE_FILE``; ``stamp()`` appends the wall
clock time as 8 bytes (little-endian double) to ``$BENCH_STAMP_FILE``. The
benchmark watches the files' sizes (``stat``), so counting completions costs one
``write(2)`` per task and no database round trip, the same for every system.
The files are opened lazily, in the process that runs the task (keyed by pid,
so a forked child never writes through its parent's descriptor).
"""

from __future__ import annotations

import os
import struct
import time

_FDS: dict[tuple[int, str], int] = {}
_STAMP = struct.Struct("<d")


def _fd(variable: str) -> int:
    key = (os.getpid(), variable)
    fd = _FDS.get(key)
    if fd is None:
        fd = _FDS[key] = os.open(os.environ[variable], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return fd


def mark() -> None:
    """One task done: append one byte to the completion file."""
    os.write(_fd("BENCH_DONE_FILE"), b"x")


def stamp() -> None:
    """A task body started: append ``time.time()`` as 8 bytes to the stamp file."""
    os.write(_fd("BENCH_STAMP_FILE"), _STAMP.pack(time.time()))
