"""Lifecycle hooks: how optional features (results, tracking) join the worker.

:class:`Hooks` declares every hook as a no-op; a feature subclasses it and
overrides the ones it needs. :class:`HookChain` dispatches: ``before_*`` hooks run
in registration order, ``after_*`` hooks in reverse, and a hook that raises is
logged and skipped so one broken extension cannot stop a worker.

Child-side hooks run in the child process around each task; master-side hooks
run in the master, which never runs task code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# The states lived here first; ``celeriac.states`` is their home (as ``celery.states``).
from celeriac.errors import BrokerError
from celeriac.states import (
    FAILURE,
    IGNORED,
    PENDING,
    READY_STATES,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
)

if TYPE_CHECKING:
    from celeriac.brokers.base import DeadLetter, Delivery
    from celeriac.context import Request
    from celeriac.errors import Retry
    from celeriac.protocol.validate import InvalidMessage

logger = logging.getLogger("celeriac.hooks")


#: Admission verdicts: run the task now, defer it to a later time, or revoke it unrun.
RUN, DEFER, REVOKE = "run", "defer", "revoke"


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of the worker's admission step: may this delivery run now?"""

    verdict: str
    #: DEFER: when it may run (a POSIX timestamp); the message goes back to the broker until then
    until: float = 0.0
    #: why it was deferred or revoked (logged, and the REVOKED result's message)
    reason: str = ""


#: The usual answer: run now.
ADMIT = Admission(RUN)


@dataclass(slots=True)
class Outcome:
    """How a task run ended."""

    state: str
    result: Any = None
    exc: BaseException | None = None
    traceback: str | None = None
    runtime: float = 0.0


@dataclass(frozen=True, slots=True)
class LostTask:
    """A task whose child process ended before the task did, or before its result was
    written (seen by the master)."""

    task_id: str
    task_name: str
    exc: BaseException
    reason: str
    redelivered: bool
    #: the task had ended, its result not yet written when the child died (early ack): a
    #: result stored before the death stands, ``exc`` is stored only where there is none
    ended: bool = False


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message sent to the dead letters instead of running."""

    reason: str
    task_id: str | None
    task_name: str | None
    queue: str

    @classmethod
    def of(cls, letter: DeadLetter, reason: str | None = None) -> DeadLettered:
        """The record of a letter the broker made (task id and name read from its headers)."""
        headers = letter.envelope.headers
        task_id, name = headers.get("id"), headers.get("task")
        return cls(
            letter.reason if reason is None else reason,
            task_id if isinstance(task_id, str) else None,
            name if isinstance(name, str) else None,
            letter.queue,
        )


class Hooks:
    """Every hook, as a no-op. Subclass and override."""

    # -- child side -------------------------------------------------------------------------

    def after_child_start(self, index: int) -> None:
        """A child process started (after fork): open per-process connections here."""

    def admit(self, request: Request) -> Admission:
        """May ``request`` run now? :data:`ADMIT`, ``Admission(DEFER, until=timestamp)`` or
        ``Admission(REVOKE, reason=...)``. Asked before ``before_task``, after the worker's own
        checks (an early ETA, expiry); the first hook that does not admit decides."""
        return ADMIT

    def before_task(self, request: Request) -> None:
        """A task is about to run."""

    def after_task(self, request: Request, outcome: Outcome) -> None:
        """A task ended (any outcome)."""

    def before_retry(self, request: Request, retry: Retry) -> None:
        """A running task is about to send itself again (``Task.retry``); the retry is not sent yet."""

    def before_settle(self) -> None:
        """The child is about to ack finished tasks: make buffered writes durable first."""

    def after_dead_letter(self, dead: DeadLettered) -> None:
        """A message was dead-lettered instead of run."""

    def after_invalid_message(self, delivery: Delivery, invalid: InvalidMessage) -> None:
        """A delivery that is no task this worker can run (undecodable, refused, or naming a
        task not registered here) was dead-lettered (``after_dead_letter`` came first)."""

    def after_internal_error(self, request: Request, exc: Exception) -> None:
        """The worker's handling of a task failed outside the task body (a handler such as
        ``on_success`` raised); it was logged and the task keeps its outcome."""

    def before_child_exit(self, index: int) -> None:
        """A child is exiting cleanly."""

    # -- master side ------------------------------------------------------------------------

    def after_task_lost(self, lost: LostTask) -> None:
        """A running task's child died or was killed at the hard time limit, or a child died
        after a task ended and before its result was written (``lost.ended``)."""

    def on_heartbeat(self) -> None:
        """Called by the master every ``worker_stats_interval`` (housekeeping)."""


class HookChain(Hooks):
    """Dispatches each hook to every registered :class:`Hooks` object."""

    def __init__(self, hooks: Sequence[Hooks] = ()) -> None:
        self._hooks: list[Hooks] = []
        self._reversed: list[Hooks] = []
        #: the hooks that answer admit (most answer nothing: the worker skips them per task)
        self._admitters: list[Hooks] = []
        for each in hooks:
            self.add(each)

    def add(self, hooks: Hooks) -> None:
        """Register ``hooks`` after the ones already registered."""
        self._hooks.append(hooks)
        self._reversed = list(reversed(self._hooks))
        if type(hooks).admit is not Hooks.admit:
            self._admitters.append(hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def _emit(self, name: str, *args: Any, defer: type[Exception] | None = None) -> None:
        """Call ``name`` on every hook; a failure is logged and the next hook runs. The first
        ``defer`` error is raised once every hook has run."""
        deferred: Exception | None = None
        for hooks in self._hooks if name.startswith("before_") else self._reversed:
            try:
                getattr(hooks, name)(*args)
            except Exception as exc:
                if defer is not None and isinstance(exc, defer):
                    deferred = deferred or exc
                else:
                    logger.exception("hook %s.%s failed; continuing", type(hooks).__name__, name)
        if deferred is not None:
            raise deferred

    def after_child_start(self, index: int) -> None:
        self._emit("after_child_start", index)

    def admit(self, request: Request) -> Admission:
        for hooks in self._admitters:
            try:
                answer = hooks.admit(request)
            except Exception:
                logger.exception("hook %s.admit failed; the task runs", type(hooks).__name__)
                continue
            if answer.verdict != RUN:
                return answer
        return ADMIT

    def before_task(self, request: Request) -> None:
        self._emit("before_task", request)

    def after_task(self, request: Request, outcome: Outcome) -> None:
        self._emit("after_task", request, outcome)

    def before_retry(self, request: Request, retry: Retry) -> None:
        self._emit("before_retry", request, retry)

    def before_settle(self) -> None:
        """Every hook's ``before_settle``; a :class:`BrokerError` (a result backend out of
        reach) is raised once all have run, so the child acks nothing and settles again."""
        self._emit("before_settle", defer=BrokerError)

    def after_dead_letter(self, dead: DeadLettered) -> None:
        self._emit("after_dead_letter", dead)

    def after_invalid_message(self, delivery: Delivery, invalid: InvalidMessage) -> None:
        self._emit("after_invalid_message", delivery, invalid)

    def after_internal_error(self, request: Request, exc: Exception) -> None:
        self._emit("after_internal_error", request, exc)

    def before_child_exit(self, index: int) -> None:
        self._emit("before_child_exit", index)

    def after_task_lost(self, lost: LostTask) -> None:
        self._emit("after_task_lost", lost)

    def on_heartbeat(self) -> None:
        self._emit("on_heartbeat")


__all__ = [
    "ADMIT",
    "DEFER",
    "FAILURE",
    "IGNORED",
    "PENDING",
    "READY_STATES",
    "REJECTED",
    "RETRY",
    "REVOKE",
    "REVOKED",
    "RUN",
    "STARTED",
    "SUCCESS",
    "Admission",
    "DeadLettered",
    "HookChain",
    "Hooks",
    "LostTask",
    "Outcome",
]
