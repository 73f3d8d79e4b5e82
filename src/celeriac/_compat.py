"""Celery's module paths in celeriac, and what happens to the names celeriac lacks.

A Celery project moves over by replacing ``celery`` with ``celeriac`` in its import
lines (and ``kombu`` with ``celeriac`` for ``Queue`` and ``Exchange``).
:data:`CELERY_MODULES` says which of Celery's modules have a celeriac counterpart.
A name celeriac lacks must not fail with Python's bare "cannot import name": it
fails with a message that names the feature and says what to do instead. Those
messages live in :data:`MISSING`, one table per module, so that the modules that
raise them (through :func:`missing_names`) and ``celeriac migrate``, which reports
them before anything runs, say the same thing.

This module imports nothing of celeriac, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

#: Celery's (and kombu's) module → the celeriac module with the same names.
CELERY_MODULES: dict[str, str] = {
    "celery": "celeriac",
    "celery.exceptions": "celeriac.exceptions",
    "celery.states": "celeriac.states",
    "celery.result": "celeriac.result",
    "celery.signals": "celeriac.signals",
    "celery.schedules": "celeriac.schedules",
    "celery.utils": "celeriac.utils",
    "celery.utils.log": "celeriac.utils.log",
    "celery.app": "celeriac.app",
    "celery.app.task": "celeriac.app.task",
    "celery.canvas": "celeriac.canvas",
    "kombu": "celeriac",
}

#: The names ``from kombu import ...`` may take from celeriac; other kombu names stay kombu's.
KOMBU_NAMES = frozenset({"Exchange", "Queue"})

CANVAS_MISSING = (
    "xmap and xstarmap are not implemented in celeriac (signatures, chain, group, chord, link "
    "callbacks and task.chunks are: see docs/canvas.md). Use a group of task.s(...) calls instead"
)
BEAT_MISSING = (
    "periodic tasks (beat) are not implemented in celeriac yet, so there is nothing to run "
    "a schedule. Until they land, run the task from cron or a systemd timer with "
    "`celeriac call proj.tasks.name -A proj`, and remove beat_schedule and add_periodic_task"
)
REMOTE_CONTROL_MISSING = (
    "remote control (revoke, inspect, control.rate_limit, pool_grow, shutdown, ...) is not "
    "implemented in celeriac yet. Give tasks expires= so stale messages are dropped instead of "
    "revoking them; `celeriac inspect` and `celeriac status` show queues and live workers from "
    "their heartbeats; stop a worker with SIGTERM"
)
_NO_WARNING = "celeriac never emits this warning: drop the warnings filter or except clause that names it"

#: Celery's modules celeriac has no counterpart for, with what to do instead.
MISSING_MODULES: dict[str, str] = {
    "celery.beat": BEAT_MISSING,
    "celery.task": "Celery 3's celery.task module is gone from Celery 5 too: import Task and "
    "shared_task from celeriac, and see celeriac.schedules for periodic tasks",
    "celery.contrib.testing": "celeriac has no pytest plugin or embedded test worker: in unit "
    "tests set task_always_eager=True (or call task.apply()); for integration tests start "
    "`celeriac worker` on a SQLite broker in a temporary directory",
    "celery.contrib.abortable": "abortable tasks need remote control, which is not implemented in "
    "celeriac: let the task check a flag of your own (a key in your database or Redis)",
    "celery.contrib.rdb": "the remote debugger is not provided: run the worker with -c 1 in a "
    "terminal and use breakpoint()",
    "celery.app.control": REMOTE_CONTROL_MISSING,
    "celery.bin": "celeriac's command line is `celeriac COMMAND`; custom command-line options "
    "(app.user_options) are not supported",
    "celery.bootsteps": "worker boot steps are not supported: use the worker signals "
    "(celeriac.signals) or hooks",
}

#: celeriac module → {Celery name celeriac lacks: what to do instead}.
MISSING: dict[str, dict[str, str]] = {
    "celeriac": {
        **dict.fromkeys(
            ("xmap", "xstarmap"),
            CANVAS_MISSING,
        ),
        "chunks": "celeriac has chunks as a task method only: task.chunks(items, n) "
        "(the canvas class celery.chunks is not implemented)",
        "current_app": "celeriac has no current_app proxy: import your app object "
        "(from proj.celery import app); inside a task use self.app",
        "current_task": "celeriac has no current_task proxy: declare the task with bind=True "
        "and use self (self.request is the running request)",
        "bugreport": "run `celeriac --version` and include app.conf.changes() in your report",
    },
    "celeriac.exceptions": {
        "TaskError": "celeriac has no common base of task errors: catch CeleryError "
        "(every celeriac error) or the specific error",
        "QueueNotFound": "a route to a queue that is not in task_queues, with "
        "task_create_missing_queues=False, raises celeriac.errors.ConfigurationError "
        "(also importable here as ImproperlyConfigured): catch that",
        "IncompleteStream": "celeriac never raises it (it belongs to Celery's AMQP result streams)",
        "AlreadyRegistered": "registering a task name again replaces the task in celeriac; nothing raises it",
        "InvalidTaskError": "a message that cannot be decoded or validated goes to the dead letters "
        "(`celeriac deadletters` lists it with the reason); no exception reaches your code",
        "SecurityError": "message signing (Celery's auth serializer) is not implemented in celeriac",
        "BackendError": "a failing result backend raises celeriac.errors.BrokerError "
        "(BrokerConnectionError when it cannot be reached): catch that",
        "BackendGetMetaError": "a failing result backend raises celeriac.errors.BrokerError: catch that",
        "BackendStoreError": "a failing result backend raises celeriac.errors.BrokerError: catch that",
        "Terminated": REMOTE_CONTROL_MISSING,
        "WorkerShutdown": "a task cannot stop its worker by raising: send the worker SIGTERM "
        "(warm shutdown) or SIGQUIT (cold shutdown)",
        "WorkerTerminate": "a task cannot stop its worker by raising: send the worker SIGTERM "
        "(warm shutdown) or SIGQUIT (cold shutdown)",
        "CeleryCommandException": "celeriac's commands say what happened with their exit code "
        "(0 success, 1 failure, 2 usage or configuration error)",
        "reraise": "use `raise exc.with_traceback(tb)`",
        **dict.fromkeys(
            (
                "CeleryWarning",
                "AlwaysEagerIgnored",
                "DuplicateNodenameWarning",
                "FixupWarning",
                "NotConfigured",
                "SecurityWarning",
                "CPendingDeprecationWarning",
                "CDeprecationWarning",
                "DuplicateTaskNameWarning",
            ),
            _NO_WARNING,
        ),
    },
    "celeriac.result": {
        "ResultBase": "test isinstance(result, (AsyncResult, ResultSet)) instead",
        "result_from_tuple": "build the handle from the task id: AsyncResult(task_id)",
        "denied_join_result": "result.get() inside a task is refused already "
        "(unless allow_join_result() or disable_sync_subtasks=False)",
        "assert_will_not_block": "result.get() inside a task is refused already "
        "(unless allow_join_result() or disable_sync_subtasks=False)",
    },
    "celeriac.states": dict.fromkeys(
        ("state", "precedence"),
        "celeriac does not order states by precedence: test membership of READY_STATES, "
        "UNREADY_STATES, EXCEPTION_STATES or PROPAGATE_STATES instead",
    ),
    "celeriac.schedules": dict.fromkeys(
        ("crontab", "schedule", "solar", "crontab_parser", "maybe_schedule", "ParseException"), BEAT_MISSING
    ),
    "celeriac.canvas": dict.fromkeys(("xmap", "xstarmap"), CANVAS_MISSING),
    "celeriac.app.task": {
        "Context": "celeriac's request class is celeriac.context.Request "
        "(what self.request is inside a task)",
    },
}


def missing_message(module: str, name: str) -> str | None:
    """What to do instead of ``from <module> import <name>``, if Celery has the name and celeriac not."""
    reason = MISSING.get(module, {}).get(name)
    return None if reason is None else f"{module}.{name} is not available: {reason}"


def missing_names(module: str) -> Callable[[str], NoReturn]:
    """A module ``__getattr__`` for ``module``: Celery names it lacks raise ImportError with
    what to do; any other name raises the usual AttributeError (so ``hasattr`` still works
    for them)."""

    def __getattr__(name: str) -> NoReturn:
        message = missing_message(module, name)
        if message is not None:
            raise ImportError(message, name=module)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
