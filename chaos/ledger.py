"""The ledger: what happened to each task, written by the tasks and the producer, not by celeriac.

Every line is one ``O_APPEND`` write (atomic between processes for lines this short), so
children, producers and the checker can share one file without locks::

    sent   <task id> <pid> <time>   the producer's send returned (the task is *confirmed*)
    failed <task id> <pid> <time>   the producer's send raised (the outcome is unknown)
    start  <task id> <pid> <time>   a child began running the task
    end    <task id> <pid> <time>   the task's body returned

A task that is started and never ended was cut short (its child or node died).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("sent", "failed", "start", "end")


def write(path: str | os.PathLike[str], kind: str, task_id: str) -> None:
    """Append one line to the ledger at ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{kind} {task_id} {os.getpid()} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


@dataclass
class Entries:
    """The ledger read back: who was sent, and how often each task started and ended."""

    sent: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    starts: Counter[str] = field(default_factory=Counter)
    ends: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path) -> Entries:
        entries = cls()
        if not path.exists():
            return entries
        # only whole lines: a writer may be halfway through its line while this reads
        for line in path.read_text().split("\n")[:-1]:
            kind, task_id, _pid, _at = line.split()
            if kind == "sent":
                entries.sent.add(task_id)
            elif kind == "failed":
                entries.failed.add(task_id)
            elif kind == "start":
                entries.starts[task_id] += 1
            elif kind == "end":
                entries.ends[task_id] += 1
        return entries
