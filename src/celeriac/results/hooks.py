"""Results as worker hooks: the worker itself never names the result backend."""

from __future__ import annotations

import os
import time
import traceback
from typing import TYPE_CHECKING

from celeriac.errors import DeadLetteredError, NotRegisteredError, Retry, TaskRevokedError
from celeriac.hooks import DeadLettered, Hooks, LostTask, Outcome
from celeriac.results.base import PendingResult, ResultBackend
from celeriac.states import FAILURE, RETRY, REVOKED, STARTED, SUCCESS

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.context import Request

#: States after_task buffers (RETRY is stored by before_retry, at once).
_STORED = frozenset({SUCCESS, FAILURE, REVOKED})
#: How often the master deletes expired results (seconds).
CLEANUP_INTERVAL = 300.0


class ResultHooks(Hooks):
    """Stores task states. Finished states are buffered and written before the ack.

    RETRY is the exception: the worker calls ``before_retry`` before it sends the next
    attempt, and it is written at once. Buffered, it could land after the next attempt's
    SUCCESS (a retry without countdown runs in another child within a millisecond) and
    leave a finished task in RETRY for good.
    """

    def __init__(self, app: Celeriac) -> None:
        self.app = app
        self._buffer: list[PendingResult] = []
        self._next_cleanup = 0.0

    @property
    def _backend(self) -> ResultBackend:
        backend = self.app.backend
        assert backend is not None, "ResultHooks are only added when a result backend is configured"
        return backend

    def _worker(self, request: Request) -> str:
        return f"{request.hostname}/{os.getpid()}"

    def before_task(self, request: Request) -> None:
        if request.track_started and not request.ignore_result:
            self._backend.store(
                PendingResult(
                    request.id or "",
                    STARTED,
                    None,
                    None,
                    request.task,
                    request.retries,
                    self._worker(request),
                    {"pid": os.getpid(), "hostname": request.hostname},
                )
            )

    def before_retry(self, request: Request, retry: Retry) -> None:
        if request.ignore_result:
            return
        value: BaseException = retry.exc or retry
        self._backend.store(
            PendingResult(
                request.id or "",
                RETRY,
                value,
                "".join(traceback.format_exception(value)),
                request.task,
                request.retries,
                self._worker(request),
            )
        )

    def after_task(self, request: Request, outcome: Outcome) -> None:
        if outcome.state not in _STORED or request.ignore_result:
            return
        value = outcome.exc if outcome.state == FAILURE else outcome.result
        if outcome.state == REVOKED:
            value = outcome.exc or TaskRevokedError("revoked")
            state = REVOKED
        else:
            state = outcome.state
        self._buffer.append(
            PendingResult(
                request.id or "",
                state,
                value,
                outcome.traceback,
                request.task,
                request.retries,
                self._worker(request),
            )
        )

    def before_settle(self) -> None:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            try:
                self._backend.store_many(batch)
            except BaseException:
                self._buffer = batch + self._buffer  # written with the next settle, in order
                raise

    def after_dead_letter(self, dead: DeadLettered) -> None:
        if dead.task_id is None:
            return
        exc_class = NotRegisteredError if dead.reason.startswith("unknown task") else DeadLetteredError
        self._backend.store(
            PendingResult(dead.task_id, FAILURE, exc_class(dead.reason), None, dead.task_name)
        )

    def after_task_lost(self, lost: LostTask) -> None:
        if lost.redelivered:
            return
        if lost.ended:  # its own result may have been written just before the child died
            stored = self._backend.get(lost.task_id)
            if stored is not None and stored.ready:
                return
        self._backend.store(PendingResult(lost.task_id, FAILURE, lost.exc, lost.reason, lost.task_name))

    def on_heartbeat(self) -> None:
        now = time.monotonic()
        if now >= self._next_cleanup:
            self._next_cleanup = now + CLEANUP_INTERVAL
            self._backend.cleanup()
