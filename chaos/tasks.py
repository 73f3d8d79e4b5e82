"""The app the fault-injection workers run, configured from ``CELERIAC_*`` like any app.

Each task writes to the ledger (``$CHAOS_LEDGER``) when it starts and when it ends, so
the checker knows what ran without asking celeriac.
"""

from __future__ import annotations

import os
import signal
import time

from celeriac import Celeriac
from chaos import ledger

app = Celeriac("chaos")

_HELD: list[bytearray] = []


def _mark(kind: str, task_id: str) -> None:
    ledger.write(os.environ["CHAOS_LEDGER"], kind, task_id)


@app.task(name="chaos.work", bind=True)
def work(self, seconds: float) -> int:
    """Take ``seconds``; the ledger shows the start and the end."""
    _mark("start", self.request.id)
    time.sleep(seconds)
    _mark("end", self.request.id)
    return os.getpid()


@app.task(name="chaos.poison", bind=True)
def poison(self) -> None:
    """Kill the child running it, every time: a message no child survives."""
    _mark("start", self.request.id)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="chaos.hog", bind=True)
def hog(self, mib: int, seconds: float) -> int:
    """Keep ``mib`` MiB alive in this child (a leak the memory limit recycles), then work."""
    _mark("start", self.request.id)
    _HELD.append(bytearray(b"\x01") * (mib * 1024 * 1024))
    time.sleep(seconds)
    _mark("end", self.request.id)
    return os.getpid()
