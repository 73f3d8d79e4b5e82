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

A chord member (its embed's ``chord`` holds the body, its ``group`` header the chord's
id) is counted once its result is stored: ``after_task`` keeps it, and
``before_settle`` (which runs after the result hooks wrote the results, before the
ack) records its task id with ``store.record_once``; the call that sees the count
reach the header size takes the chord's once-only key (``store.add``) and, only if
it won, sends the body with the header's results in ``group_index`` order. A failed
or revoked member takes the same key to store ChordError as the body's result and
run the body's errbacks, so a chord ends once: by its body or by its failure.

Signature options a Celery producer wrote that celeriac does not send with
(``reply_to`` of its result consumer, stamps, an empty ``chord``) are dropped.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from celeriac.canvas.primitives import chord_ttl
from celeriac.canvas.signature import Signature, signature
from celeriac.context import Request as _Request
from celeriac.errors import ChordError
from celeriac.hooks import Hooks, Outcome
from celeriac.sending import SEND_OPTIONS
from celeriac.states import FAILURE, REVOKED, SUCCESS

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.context import Request
    from celeriac.task import Task

logger = logging.getLogger("celeriac.canvas")

#: Signature options passed on when a worker sends a callback or a chain step: what a send
#: takes, but the lineage and canvas fields the worker sets itself, plus the signature's id.
_PASSED_ON = (SEND_OPTIONS - {"chain", "chord", "parent_id", "root_id", "reply_to", "retries"}) | {"task_id"}


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
        #: chord members finished in this batch, counted once their results are stored
        self._parts: list[tuple[Request, Outcome]] = []

    def _signature(self, data: Mapping[str, Any]) -> Signature:
        return sendable(signature(data, app=self.app))

    def after_task(self, request: Request, outcome: Outcome) -> None:
        if outcome.state == SUCCESS:
            self._succeeded(request, outcome.result)
        elif outcome.state == FAILURE:
            self._failed(request, outcome)
        if request.chord and request.group and outcome.state in (SUCCESS, FAILURE, REVOKED):
            self._parts.append((request, outcome))

    def before_settle(self) -> None:
        parts, self._parts = self._parts, []
        for index, (request, outcome) in enumerate(parts):
            try:
                chord_part_done(self.app, request, outcome)
            except BaseException:
                self._parts = parts[index:] + self._parts  # counted with the next settle
                raise

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


def _keys(group_id: str) -> tuple[str, str, str]:
    """The chord's record of counted members, its set of ``index:task id`` and its once-only key."""
    return f"chord:{group_id}:parts", f"chord:{group_id}:ids", f"chord:{group_id}:done"


def chord_part_done(app: Celeriac, request: Request, outcome: Outcome) -> None:
    """Count one finished chord member (its result already stored); end the chord once: send the
    body when the last member succeeded, or fail it at the first failed member."""
    assert request.chord is not None and request.group is not None and request.id is not None
    store = app.store
    ttl = chord_ttl(app)
    parts, ids, done = _keys(request.group)
    if outcome.state != SUCCESS:
        exc = ChordError(f"Dependency {request.id} raised {outcome.exc!r}")
        fail_chord(app, request.group, request.chord, exc, request.id, outcome.traceback)
        return
    store.set_add(ids, f"{request.group_index or 0}:{request.id}", ttl)
    count = store.record_once(parts, request.id, ttl)
    size = request.chord.get("chord_size")
    if not isinstance(size, int) and app.backend is not None:  # a Celery producer on Redis results
        size = app.backend.chord_size(request.group)
    if not isinstance(size, int):
        logger.error(
            "chord %s: neither its body (chord_size) nor the result backend gives the header's "
            "size: the body cannot be sent; send chords with a producer that sets chord_size",
            request.group,
        )
        return
    if count >= size and store.add(done, b"fired", ttl, owner=request.id):
        fire_body(app, request.group, request.chord, request.root_id)


def header_values(app: Celeriac, group_id: str) -> list[Any]:
    """The header's results in ``group_index`` order (every member's result is stored)."""
    members = sorted(
        (int(index), task_id)
        for index, task_id in (item.split(":", 1) for item in app.store.set_members(_keys(group_id)[1]))
    )
    values = []
    for _, task_id in members:
        record = app.backend.get(task_id) if app.backend is not None else None
        values.append(record.result if record is not None else None)
    return values


def fire_body(app: Celeriac, group_id: str, body: Mapping[str, Any], root_id: str | None) -> None:
    """Send the body with the header's results as its first argument (unless immutable)."""
    sig = sendable(signature(dict(body), app=app))
    sig["options"].pop("chord_size", None)
    sig.pop("chord_size", None)
    values = header_values(app, group_id)
    sig.apply_async((values,), parent_id=group_id, root_id=root_id)


def fail_chord(
    app: Celeriac,
    group_id: str,
    body: Mapping[str, Any],
    exc: Exception,
    owner: str,
    traceback: str | None = None,
) -> bool:
    """Take the chord's once-only key and, if this call took it, store ``exc`` as the body's
    result and run the body's errbacks (each once; a new-style one gets the failed member's
    ``traceback``). False if the chord had ended already."""
    if not app.store.add(_keys(group_id)[2], b"failed", chord_ttl(app), owner=owner):
        return False
    sig = signature(dict(body), app=app)
    body_id = sig.options.get("task_id") or (sig.tasks[0].id if hasattr(sig, "tasks") and sig.tasks else None)
    logger.warning("chord %s failed: %s", group_id, exc)
    if body_id and app.backend is not None:
        from celeriac.results.base import PendingResult

        app.backend.store(PendingResult(body_id, FAILURE, exc, None, str(sig.task)))
    request = _Request(id=body_id, task=str(sig.task), called_directly=False)
    for data in sig.options.get("link_error") or ():
        errback = sendable(signature(data, app=app))
        task = app.tasks.get(str(errback.task))
        if task is not None and takes_request(task):
            errback(request, exc, traceback)
        else:
            errback.apply_async((body_id,), parent_id=body_id)
    return True
