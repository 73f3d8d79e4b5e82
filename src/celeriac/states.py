"""Task states, as Celery names them (``celery.states``): the vocabulary everything else shares.

A result goes ``PENDING`` (nothing known yet) → ``STARTED`` (only with
``track_started``) → one of the ready states. ``RETRY`` sits between attempts.
``IGNORED`` and ``REJECTED`` are outcomes that store nothing: the task raised
:class:`~celeriac.errors.Ignore` or :class:`~celeriac.errors.Reject`.

This module imports nothing of celeriac but ``_compat`` (which imports nothing), so every
layer may use it.
"""

from __future__ import annotations

from celeriac import _compat

#: Nothing is known about the task (unknown ids are pending too).
PENDING = "PENDING"
#: A worker received the task (kept for Celery compatibility; celeriac does not store it).
RECEIVED = "RECEIVED"
#: A worker started the task (stored only with ``track_started``).
STARTED = "STARTED"
#: The task returned; the result is its return value.
SUCCESS = "SUCCESS"
#: The task raised; the result is the exception.
FAILURE = "FAILURE"
#: The task was revoked or expired before it ran.
REVOKED = "REVOKED"
#: The task raised Reject: its message went to the dead letters (or back to its queue).
REJECTED = "REJECTED"
#: The task asked to be run again (``Task.retry``); the result is the reason.
RETRY = "RETRY"
#: The task raised Ignore: nothing is stored.
IGNORED = "IGNORED"

#: States after which a result will not change.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: States in which a result may still change.
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
#: States whose result is an exception.
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
#: States whose exception ``AsyncResult.get()`` raises.
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
#: Every state.
ALL_STATES = frozenset({PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED})

#: Celery's ``state`` and ``precedence`` raise ImportError saying what to use instead.
__getattr__ = _compat.missing_names(__name__)

__all__ = [
    "ALL_STATES",
    "EXCEPTION_STATES",
    "FAILURE",
    "IGNORED",
    "PENDING",
    "PROPAGATE_STATES",
    "READY_STATES",
    "RECEIVED",
    "REJECTED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "UNREADY_STATES",
]
