"""Signal handlers record intent; the master acts on it in its loop.

Handlers are plain methods that tests call directly. Signals:

* SIGTERM, SIGINT: warm shutdown (running tasks finish, prefetched messages go
  back to their queues); the second one turns it into a cold shutdown.
* SIGQUIT: cold shutdown (children are killed at once; see the master for what
  happens to their tasks).
* SIGCHLD: a child changed state; reap it.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
from collections import deque
from typing import Any


class Action(enum.Enum):
    """Something the master loop must do."""

    WARM_STOP = "warm-stop"
    COLD_STOP = "cold-stop"
    REAP = "reap"


class Control:
    """Turns signals into actions, and wakes the master's select() through a pipe."""

    def __init__(self) -> None:
        self.actions: deque[Action] = deque()
        self.stop_requests = 0
        #: the last signal received (None: none yet), for ``worker_shutting_down``
        self.last_signal: int | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def handle_signal(self, signum: int, frame: Any = None) -> None:
        """Record what ``signum`` asks for."""
        self.last_signal = signum
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop_requests += 1
            self.actions.append(Action.WARM_STOP if self.stop_requests == 1 else Action.COLD_STOP)
        elif signum == signal.SIGQUIT:
            self.stop_requests += 1
            self.actions.append(Action.COLD_STOP)
        elif signum == signal.SIGCHLD:
            self.actions.append(Action.REAP)

    def install(self) -> None:
        """Route the signals here; any of them wakes the master's select()."""
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, self.handle_signal)

    def drain_wakeups(self) -> None:
        """Empty the wake-up pipe."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def take(self) -> list[Action]:
        """The recorded actions, oldest first, emptying the queue."""
        taken = []
        while self.actions:
            taken.append(self.actions.popleft())
        return taken

    def close(self) -> None:
        """Close the wake-up pipe."""
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
