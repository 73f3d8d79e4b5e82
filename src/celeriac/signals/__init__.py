"""Celery's signals, with Celery's names, senders and keyword arguments (``celery.signals``).

Error trackers, tracing, metrics and Django integrations connect to these, so each
is sent in the process where Celery sends it, with the same sender and arguments.
Where each is sent, and its sender:

* ``before_task_publish``, ``after_task_publish``: the process sending the task
  (a retry: the child); the task name.
* ``task_prerun``, ``task_postrun``, ``task_success``, ``task_failure``,
  ``task_retry``, ``task_internal_error``: the child running the task (and
  ``apply()`` in eager mode); the task object. ``task_failure`` also comes from
  the master for a task whose child was lost.
* ``task_revoked``: the child that met an expired message; the task object.
* ``task_unknown``, ``task_rejected``: the child that fetched the message; None.
* ``import_modules``: the worker, before it imports ``include``; the app.
* ``celeryd_init``, ``celeryd_after_setup``, ``worker_shutting_down``: the
  command and the master; the node name.
* ``worker_init``, ``worker_before_create_process``, ``worker_ready``,
  ``worker_shutdown``: the master; the master.
* ``worker_process_init``, ``worker_process_shutdown``: each child; None.
* ``heartbeat_sent``: the master, per heartbeat; None.
* ``setup_logging``, ``after_setup_logger``, ``after_setup_task_logger``:
  ``celeriac worker`` (and ``monitor``) at start; None.

The producer and the worker send through hooks (:mod:`celeriac.signals.hooks`, which
the app always adds) and through direct calls where no hook exists (the master's
lifecycle, the command line, logging set-up). Signals celeriac never sends (beat,
eventlet, ``task_received``, ...) are defined too, so imports keep working; connecting
to one warns (:class:`UnsentSignalWarning`) with what to do instead. ``docs/celery.md``
("Signals") has the arguments of each.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from celeriac.signals.dispatch import Signal


class UnsentSignalWarning(UserWarning):
    """A receiver was connected to a Celery signal celeriac never sends."""


class UnsentSignal(Signal):
    """A Celery signal celeriac never sends: connecting warns, naming what to do instead."""

    def __init__(self, name: str, instead: str, providing_args: Iterable[str] | None = None) -> None:
        super().__init__(providing_args, name=name)
        #: what to use instead, for the warning
        self.instead = instead

    def connect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        retry: bool = False,
    ) -> Any:
        warnings.warn(
            f"celeriac never sends the {self.name} signal, so this receiver will not run: {self.instead}",
            UnsentSignalWarning,
            stacklevel=2,
        )
        if receiver is None:  # @signal.connect(...): warned here, at the decorator's line

            def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
                return Signal.connect(self, function, sender, weak, dispatch_uid, retry)

            return decorate
        return super().connect(receiver, sender, weak, dispatch_uid, retry)


# -- task: producer side ----------------------------------------------------------------------
before_task_publish = Signal(
    name="before_task_publish",
    providing_args={"body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy"},
)
after_task_publish = Signal(name="after_task_publish", providing_args={"body", "exchange", "routing_key"})

# -- task: worker side ------------------------------------------------------------------------
task_prerun = Signal(name="task_prerun", providing_args={"task_id", "task", "args", "kwargs"})
task_postrun = Signal(
    name="task_postrun", providing_args={"task_id", "task", "args", "kwargs", "retval", "state"}
)
task_success = Signal(name="task_success", providing_args={"result"})
task_retry = Signal(name="task_retry", providing_args={"request", "reason", "einfo"})
task_failure = Signal(
    name="task_failure",
    providing_args={"task_id", "exception", "args", "kwargs", "traceback", "einfo"},
)
task_internal_error = Signal(
    name="task_internal_error",
    providing_args={"task_id", "args", "kwargs", "request", "exception", "traceback", "einfo"},
)
task_revoked = Signal(name="task_revoked", providing_args={"request", "terminated", "signum", "expired"})
task_rejected = Signal(name="task_rejected", providing_args={"message", "exc"})
task_unknown = Signal(name="task_unknown", providing_args={"message", "exc", "name", "id"})

# -- the worker program and its processes -----------------------------------------------------
celeryd_init = Signal(name="celeryd_init", providing_args={"instance", "conf", "options"})
celeryd_after_setup = Signal(name="celeryd_after_setup", providing_args={"instance", "conf"})
import_modules = Signal(name="import_modules")
worker_init = Signal(name="worker_init")
worker_before_create_process = Signal(name="worker_before_create_process")
worker_process_init = Signal(name="worker_process_init")
worker_process_shutdown = Signal(name="worker_process_shutdown", providing_args={"pid", "exitcode"})
worker_ready = Signal(name="worker_ready")
worker_shutting_down = Signal(name="worker_shutting_down", providing_args={"sig", "how", "exitcode"})
worker_shutdown = Signal(name="worker_shutdown")
heartbeat_sent = Signal(name="heartbeat_sent")

# -- logging ----------------------------------------------------------------------------------
_LOGGING_ARGS = {"loglevel", "logfile", "format", "colorize"}
setup_logging = Signal(name="setup_logging", providing_args=_LOGGING_ARGS)
after_setup_logger = Signal(name="after_setup_logger", providing_args={"logger", *_LOGGING_ARGS})
after_setup_task_logger = Signal(name="after_setup_task_logger", providing_args={"logger", *_LOGGING_ARGS})

# -- Celery signals celeriac never sends ------------------------------------------------------
task_received = UnsentSignal(
    "task_received",
    "the child fetches messages itself, there is no receiving master; use task_prerun "
    "(sent in the child just before the task runs)",
    {"request"},
)
task_sent = UnsentSignal(
    "task_sent",
    "it is deprecated in Celery; use after_task_publish",
    {"task_id", "task", "args", "kwargs", "eta", "taskset"},
)
_NO_BEAT = "periodic tasks (beat) are not implemented; run a scheduler such as cron that calls delay()"
beat_init = UnsentSignal("beat_init", _NO_BEAT)
beat_embedded_init = UnsentSignal("beat_embedded_init", _NO_BEAT)
_NO_EVENTLET = "celeriac has no eventlet pool (children are forked processes); use worker_process_init"
eventlet_pool_started = UnsentSignal("eventlet_pool_started", _NO_EVENTLET)
eventlet_pool_preshutdown = UnsentSignal("eventlet_pool_preshutdown", _NO_EVENTLET)
eventlet_pool_postshutdown = UnsentSignal("eventlet_pool_postshutdown", _NO_EVENTLET)
eventlet_pool_apply = UnsentSignal("eventlet_pool_apply", _NO_EVENTLET, {"target", "args", "kwargs"})
user_preload_options = UnsentSignal(
    "user_preload_options",
    "celeriac's command line takes no user options; read a setting or an environment variable",
    {"app", "options"},
)

__all__ = [
    "Signal",
    "UnsentSignal",
    "UnsentSignalWarning",
    "after_setup_logger",
    "after_setup_task_logger",
    "after_task_publish",
    "beat_embedded_init",
    "beat_init",
    "before_task_publish",
    "celeryd_after_setup",
    "celeryd_init",
    "eventlet_pool_apply",
    "eventlet_pool_postshutdown",
    "eventlet_pool_preshutdown",
    "eventlet_pool_started",
    "heartbeat_sent",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_internal_error",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_sent",
    "task_success",
    "task_unknown",
    "user_preload_options",
    "worker_before_create_process",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]
