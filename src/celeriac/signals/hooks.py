"""Celery's task and child signals as worker hooks: the worker sends them without naming them.

Every app puts :class:`SignalHooks` first in its hook chain (``Celeriac.hooks``).
``before_*`` hooks run in registration order and ``after_*`` hooks in reverse, so
the order is Celery's: ``task_prerun`` comes before the result backend stores
STARTED, and the outcome signal (``task_success``, ``task_failure`` or
``task_retry``) then ``task_postrun`` come after the result was recorded and after
the task's own handlers (``on_success``, ``after_return``...).

Each hook returns at once when its signals have no receivers: a worker nobody
listens to pays a few attribute reads per task. Receivers are read per call, not
when the chain is built, because integrations connect in ``worker_process_init``
(OpenTelemetry's recipe), in the child, after the chain exists.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from celeriac.einfo import ExceptionInfo
from celeriac.errors import NotRegisteredError, ProtocolError, Reject
from celeriac.hooks import Hooks, LostTask, Outcome
from celeriac.signals import (
    heartbeat_sent,
    task_failure,
    task_internal_error,
    task_postrun,
    task_prerun,
    task_rejected,
    task_retry,
    task_revoked,
    task_success,
    task_unknown,
    worker_process_init,
    worker_process_shutdown,
)
from celeriac.states import FAILURE, REJECTED, RETRY, REVOKED, SUCCESS

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.brokers.base import Delivery
    from celeriac.context import Request
    from celeriac.errors import Retry
    from celeriac.protocol.validate import InvalidMessage
    from celeriac.task import Task


class SignalHooks(Hooks):
    """Sends the task signals in the child, and ``task_failure`` for a task the master saw lost."""

    def __init__(self, app: Celeriac) -> None:
        self.app = app
        #: the Retry of the running task, from ``before_retry`` (the outcome keeps only its cause)
        self._retry: Retry | None = None

    def _task(self, name: str | None) -> Task | None:
        return self.app.tasks.get(name or "")

    # -- the child process ----------------------------------------------------------------

    def after_child_start(self, index: int) -> None:
        if worker_process_init.receivers:
            worker_process_init.send(sender=None)

    def before_child_exit(self, index: int) -> None:
        if worker_process_shutdown.receivers:
            worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)

    # -- one task -------------------------------------------------------------------------

    def before_task(self, request: Request) -> None:
        if task_prerun.receivers:
            task = self._task(request.task)
            task_prerun.send(
                sender=task, task_id=request.id, task=task, args=request.args, kwargs=request.kwargs
            )

    def before_retry(self, request: Request, retry: Retry) -> None:
        self._retry = retry

    def after_task(self, request: Request, outcome: Outcome) -> None:
        retry, self._retry = self._retry, None
        if not (
            task_postrun.receivers
            or task_success.receivers
            or task_failure.receivers
            or task_retry.receivers
            or task_revoked.receivers
        ):
            return
        task = self._task(request.task)
        state = outcome.state
        if state == REVOKED:  # not run: no postrun, as no prerun was sent
            expired = request.expires is not None and request.expires <= datetime.now(UTC)
            task_revoked.send(sender=task, request=request, terminated=False, signum=None, expired=expired)
            return
        retval = outcome.result if state == SUCCESS else outcome.exc
        if state == SUCCESS:
            task_success.send(sender=task, result=outcome.result)
        elif (state == FAILURE and outcome.exc is not None) or (
            # a Reject without requeue ends the task for good: Celery sends task_failure for it
            state == REJECTED and isinstance(outcome.exc, Reject) and not outcome.exc.requeue
        ):
            exc = outcome.exc
            task_failure.send(
                sender=task,
                task_id=request.id,
                exception=exc,
                args=request.args,
                kwargs=request.kwargs,
                traceback=exc.__traceback__,
                einfo=ExceptionInfo.from_exception(exc, outcome.traceback),
            )
        elif state == RETRY:
            reason = retry or outcome.exc
            retval = reason
            if task_retry.receivers:
                einfo = None if reason is None else ExceptionInfo.from_exception(reason)
                task_retry.send(sender=task, request=request, reason=reason, einfo=einfo)
        task_postrun.send(
            sender=task,
            task_id=request.id,
            task=task,
            args=request.args,
            kwargs=request.kwargs,
            retval=retval,
            state=state,
        )

    def after_internal_error(self, request: Request, exc: Exception) -> None:
        if task_internal_error.receivers:
            task = self._task(request.task)
            task_internal_error.send(
                sender=task,
                task_id=request.id,
                args=request.args,
                kwargs=request.kwargs,
                request=request,
                exception=exc,
                traceback=exc.__traceback__,
                einfo=ExceptionInfo((type(exc), exc, exc.__traceback__), internal=True),
            )

    def after_invalid_message(self, delivery: Delivery, invalid: InvalidMessage) -> None:
        name = invalid.task_name
        if name is not None and name not in self.app.tasks:  # Celery looks the name up first
            if task_unknown.receivers:
                exc = NotRegisteredError(invalid.reason)
                task_unknown.send(sender=None, message=delivery, exc=exc, name=name, id=invalid.task_id)
        elif task_rejected.receivers:
            task_rejected.send(sender=None, message=delivery, exc=ProtocolError(invalid.reason))

    # -- the master -----------------------------------------------------------------------

    def after_task_lost(self, lost: LostTask) -> None:
        # a task delivered again will run again; one that had ended sent its own signals
        if lost.redelivered or lost.ended or not task_failure.receivers:
            return
        task_failure.send(
            sender=self._task(lost.task_name),
            task_id=lost.task_id,
            exception=lost.exc,
            args=None,
            kwargs=None,
            traceback=None,
            einfo=ExceptionInfo.from_exception(lost.exc),
        )

    def on_heartbeat(self) -> None:
        if heartbeat_sent.receivers:
            heartbeat_sent.send(sender=None)


__all__ = ["SignalHooks"]
