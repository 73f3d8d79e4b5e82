"""What runs after a task: its callbacks, the next step of its chain, or its errbacks.

The worker never names the canvas: every app adds :class:`CanvasHooks` to its
hooks, and ``Task.apply`` (eager) calls them the same way, so a chain or a link
gives the same results in a worker and in process.

After a success, the next step of the request's chain (the embed's ``chain`` is
the rest of the chain, last step first: the worker pops the end) is sent with the
return value as its first argument (unless it is immutable) and the rest of the
chain in its own message; then each callback (``link``) is sent the same way.
Each carries this task's id as ``parent_id`` and its ``root_id``.

After a failure, each errback (``link_error``) runs once, in one of Celery's two
forms, decided as Celery decides it: an errback whose task is registered here and
whose function (not bound) takes more than one positional argument is called here,
at once, with ``(request, exc, traceback)``; any other is sent as a task with the
failed task's id as its only argument. A failed chain step sends no further step.

Signature options a Celery producer wrote that celeriac does not send with
(``reply_to`` of its result consumer, stamps, an empty ``chord``) are dropped.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeriac.canvas.signature import Signature, signature
from celeriac.hooks import Hooks, Outcome
from celeriac.states import FAILURE, SUCCESS

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.context import Request
    from celeriac.task import Task

logger = logging.getLogger("celeriac.canvas")

#: Signature options passed on when a worker sends a callback or a chain step.
_PASSED_ON = frozenset(
    {
        "task_id",
        "countdown",
        "eta",
        "expires",
        "queue",
        "routing_key",
        "exchange",
        "priority",
        "delivery_mode",
        "time_limit",
        "soft_time_limit",
        "serializer",
        "ignore_result",
        "headers",
        "shadow",
        "link",
        "link_error",
        "group_id",
        "group_index",
    }
)


def takes_request(task: Task) -> bool:
    """Does ``task`` take Celery's new errback arguments ``(request, exc, traceback)``? Yes when
    its function is not bound and takes more than one positional argument (or ``*args``)."""
    function = getattr(type(task), "__wrapped__", None)
    if function is None or task.bind:
        return False
    try:
        spec = inspect.getfullargspec(function)
    except TypeError:
        return False
    return bool(spec.varargs) or len(spec.args) > 1


def sendable(sig: Signature) -> Signature:
    """``sig`` (and the members of a group or chain) without the options a worker does not send
    with (see the module docstring)."""
    for member in sig.kwargs.get("tasks") or () if sig.subtask_type else ():
        if isinstance(member, Signature):
            sendable(member)
    options = sig.options
    kept = {key: value for key, value in options.items() if key in _PASSED_ON and value is not None}
    if len(kept) != len(options):
        dropped = sorted(key for key in options if key not in kept)
        logger.debug("%s: options not passed on: %s", sig.task, ", ".join(dropped))
        sig["options"] = kept
    return sig


class CanvasHooks(Hooks):
    """Sends callbacks and the next chain step after a success, runs errbacks after a failure."""

    def __init__(self, app: Celeriac) -> None:
        self.app = app

    def _signature(self, data: Mapping[str, Any]) -> Signature:
        return sendable(signature(data, app=self.app))

    def after_task(self, request: Request, outcome: Outcome) -> None:
        if outcome.state == SUCCESS:
            self._succeeded(request, outcome.result)
        elif outcome.state == FAILURE:
            self._failed(request, outcome)

    def _succeeded(self, request: Request, value: Any) -> None:
        family = {"parent_id": request.id, "root_id": request.root_id or request.id}
        if request.chain:
            rest = list(request.chain)
            step = self._signature(rest.pop())
            step.apply_async((value,), chain=rest or None, **family)
        for callback in request.callbacks or ():
            self._signature(callback).apply_async((value,), **family)

    def _failed(self, request: Request, outcome: Outcome) -> None:
        if not request.errbacks:
            return
        family = {"parent_id": request.id, "root_id": request.root_id or request.id}
        for data in request.errbacks:
            errback = self._signature(data)
            task = self.app.tasks.get(str(errback.task))
            if task is not None and takes_request(task):
                errback(request, outcome.exc, outcome.traceback)
            else:
                errback.apply_async((request.id,), **family)
