"""Execution context: the request of the task running now, whether a worker runs it, and the
default app.

:class:`Request` is what a running task knows about its own invocation
(``self.request``). The worker (or ``Task.apply``) pushes one around each task
with :func:`push_request`; :func:`current_request` reads it, for example to give a
task sent from inside another task its parent and root ids.

The default app (Celery's current app) is held here, below the result handles, so
``AsyncResult(task_id)`` without an app reads the default app's result backend as in
Celery. :mod:`celeriac._state` decides which app it is (and creates one when needed);
this module only keeps the reference.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celeriac.errors import Retry
from celeriac.protocol.message import KNOWN_HEADERS, TaskMessage

if TYPE_CHECKING:
    from celeriac.app import Celeriac

#: True while a worker runs task code, so ``AsyncResult.get()`` inside a task can refuse.
in_worker_task: contextvars.ContextVar[bool] = contextvars.ContextVar("in_worker_task", default=False)


@dataclass(slots=True)
class Request:
    """What a running task knows about its own invocation (``self.request``), with Celery's names.

    From a worker: ``headers`` are the message's application headers that are not
    Celery's own (None when there are none); ``properties``, ``reply_to``,
    ``correlation_id`` and ``priority`` come from the message properties;
    ``hostname`` is the worker's node name; ``delivery_info`` holds ``exchange``,
    ``routing_key``, ``priority`` and ``redelivered`` (and celeriac's ``queue`` and
    ``delivery_tag``). From ``apply`` (eager): ``is_eager`` is True and
    ``delivery_info`` says so, as in Celery.
    """

    id: str | None = None
    task: str | None = None
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    origin: str | None = None
    hostname: str | None = None
    timelimit: tuple[float | None, float | None] = (None, None)
    delivery_info: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    priority: int | None = None
    is_eager: bool = False
    called_directly: bool = True
    message: TaskMessage | None = None
    acks_late: bool = False
    ignore_result: bool = False
    track_started: bool = False
    #: set by the worker: stores RETRY and publishes a retry at once, for
    #: ``Task.retry(throw=False)`` (see ``worker/execute.py``)
    retry_handler: Callable[[Retry], None] | None = None
    #: the body's embed (protocol 2): signature dicts to send after a success (``link``), to
    #: run after a failure (``link_error``), and the rest of the chain, last step first
    callbacks: list[Any] | None = None
    errbacks: list[Any] | None = None
    chain: list[Any] | None = None
    #: a chord member's body (the embed's ``chord``: a signature dict) and its place in the header
    chord: dict[str, Any] | None = None
    group_index: int | None = None


#: Header names Celery never shows in ``request.headers``: the protocol's own, and the
#: names of request fields (Celery drops both from the custom headers).
_NOT_CUSTOM = KNOWN_HEADERS | {
    "compression",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
    "taskset",
    "chain",
    "chord",
    "callbacks",
    "errbacks",
    *Request.__dataclass_fields__,
}


def custom_headers(message: TaskMessage) -> dict[str, Any] | None:
    """The application headers a producer added to ``message`` (``apply_async(headers=...)``),
    as Celery's ``request.headers`` shows them: None when there are none."""
    found = {name: value for name, value in message.extra_headers.items() if name not in _NOT_CUSTOM}
    return found or None


_current: contextvars.ContextVar[Request | None] = contextvars.ContextVar("celeriac_request", default=None)


def current_request() -> Request | None:
    """The request of the task running in this context, if any."""
    return _current.get()


def push_request(request: Request) -> contextvars.Token[Request | None]:
    """Make ``request`` current (the worker calls this around each task)."""
    return _current.set(request)


def pop_request(token: contextvars.Token[Request | None]) -> None:
    """Undo :func:`push_request`."""
    _current.reset(token)


_default_app: Celeriac | None = None


def default_app() -> Celeriac | None:
    """The default app, or None before any app was created (see :mod:`celeriac._state`)."""
    return _default_app


def set_default_app(app: Celeriac | None) -> None:
    """Keep ``app`` as the default app; only :mod:`celeriac._state` (and tests) call this."""
    global _default_app
    _default_app = app
