"""In-process result backend (``memory://``), for tests and eager mode."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from celeriac.results.base import PendingResult, ResultBackend, ResultRecord
from celeriac.states import SUCCESS


class MemoryResultBackend(ResultBackend):
    """Results in a dict; threads of one process share it."""

    def __init__(self, url: str = "memory://", **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        self._cond = threading.Condition()
        self._rows: dict[str, tuple[str, str, bytes, PendingResult, float]] = {}
        #: raised by every store, so a waiter notices a store made between its read and its wait
        self._version = 0

    def store_many(self, items: Sequence[PendingResult]) -> None:
        now = time.time()
        with self._cond:
            for item in items:
                old = self._rows.get(item.task_id)
                if old is not None and old[0] == SUCCESS:
                    continue  # a success stands: a re-run's later state does not replace it
                content_type, raw = self.encode(item)
                self._rows[item.task_id] = (item.state, content_type, raw, item, now)
            self._version += 1
            self._cond.notify_all()

    def get(self, task_id: str) -> ResultRecord | None:
        with self._cond:
            row = self._rows.get(task_id)
        if row is None:
            return None
        state, content_type, raw, item, done = row
        return self.decode(
            task_id,
            state,
            content_type,
            raw,
            traceback=item.traceback,
            name=item.name,
            retries=item.retries,
            worker=item.worker,
            date_done=done,
        )

    def forget(self, task_id: str) -> None:
        with self._cond:
            self._rows.pop(task_id, None)

    def cleanup(self) -> int:
        if self.expires is None:
            return 0
        cutoff = time.time() - self.expires
        with self._cond:
            old = [k for k, row in self._rows.items() if row[4] < cutoff]
            for key in old:
                del self._rows[key]
        return len(old)

    def _change_token(self) -> int:
        with self._cond:
            return self._version

    def _wait_for_change(self, token: int, until: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._version != token, max(0.0, until - time.monotonic()))
