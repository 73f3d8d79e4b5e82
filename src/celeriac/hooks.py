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

if TYPE_CHECKING:
    from celeriac.errors import Retry
    from celeriac.task import Request

logger = logging.getLogger("celeriac.hooks")

# Task states, as Celery names them.
PENDING = "PENDING"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
#: States after which a result will not change.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: Outcomes that record nothing: the task raised Ignore, or Reject.
IGNORED = "IGNORED"
REJECTED = "REJECTED"


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
    """A task whose child process ended before the task did (seen by the master)."""

    task_id: str
    task_name: str
    exc: BaseException
    reason: str
    redelivered: bool


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """A message sent to the dead letters instead of running."""

    reason: str
    task_id: str | None
    task_name: str | None
    queue: str


class Hooks:
    """Every hook, as a no-op. Subclass and override."""

    # -- child side -------------------------------------------------------------------------

    def after_child_start(self, index: int) -> None:
        """A child process started (after fork): open per-process connections here."""

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

    def before_child_exit(self, index: int) -> None:
        """A child is exiting cleanly."""

    # -- master side ------------------------------------------------------------------------

    def after_task_lost(self, lost: LostTask) -> None:
        """A running task's child died or was killed at the hard time limit."""

    def on_heartbeat(self) -> None:
        """Called by the master every ``worker_stats_interval`` (housekeeping)."""


class HookChain(Hooks):
    """Dispatches each hook to every registered :class:`Hooks` object."""

    def __init__(self, hooks: Sequence[Hooks] = ()) -> None:
        self._hooks: list[Hooks] = list(hooks)
        self._reversed: list[Hooks] = list(reversed(self._hooks))

    def add(self, hooks: Hooks) -> None:
        """Register ``hooks`` after the ones already registered."""
        self._hooks.append(hooks)
        self._reversed = list(reversed(self._hooks))

    def __len__(self) -> int:
        return len(self._hooks)

    def _emit(self, name: str, *args: Any) -> None:
        for hooks in self._hooks if name.startswith("before_") else self._reversed:
            try:
                getattr(hooks, name)(*args)
            except Exception:
                logger.exception("hook %s.%s failed; continuing", type(hooks).__name__, name)

    def after_child_start(self, index: int) -> None:
        self._emit("after_child_start", index)

    def before_task(self, request: Request) -> None:
        self._emit("before_task", request)

    def after_task(self, request: Request, outcome: Outcome) -> None:
        self._emit("after_task", request, outcome)

    def before_retry(self, request: Request, retry: Retry) -> None:
        self._emit("before_retry", request, retry)

    def before_settle(self) -> None:
        self._emit("before_settle")

    def after_dead_letter(self, dead: DeadLettered) -> None:
        self._emit("after_dead_letter", dead)

    def before_child_exit(self, index: int) -> None:
        self._emit("before_child_exit", index)

    def after_task_lost(self, lost: LostTask) -> None:
        self._emit("after_task_lost", lost)

    def on_heartbeat(self) -> None:
        self._emit("on_heartbeat")
