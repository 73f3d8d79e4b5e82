"""``Task.chunks``: one large iterable of calls, sent as tasks of at most ``n`` calls each.

``add.chunks(zip(xs, ys), 100).apply_async()`` sends one ``celery.starmap``
message per chunk of 100 argument tuples. A worker runs a chunk by calling the
inner task's function once per tuple, in one child, and stores the list of
return values as that message's result.

Wire layout, the same as Celery's (so a Celery producer's chunks run on a
celeriac worker, and the reverse):

headers
    ``task`` is ``celery.starmap``; ``group`` is one id shared by every chunk of
    one call and ``group_index`` the chunk's position (0, 1, ...).
body
    args ``[]``; kwargs ``{"task": <signature>, "it": [[arg, ...], ...]}``, where
    the signature is the dict Celery's ``Task.s()`` makes for the inner task:
    ``{"task": name, "args": [], "kwargs": {}, "options": {}, "subtask_type": null,
    "immutable": false}``. The worker uses only its ``task`` (a bare name works too).

Routing: a chunk goes where the inner task would go: ``queue=`` of the call,
then the inner task's own ``queue`` option, then ``task_routes`` for the inner
task's name, then ``task_routes`` for ``celery.starmap``, then
``task_default_queue``. (Celery 5 means to route by the inner name but, as
shipped, routes by ``celery.starmap`` only; the fallback keeps such a route
working.)

Streaming: the iterable is read lazily, ``BATCH_SIZE`` chunk messages at a
time, each batch in one broker round trip, so a generator of millions of items
never sits in memory at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from celeriac.results.result import AsyncResult, GroupResult

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.protocol.message import TaskMessage
    from celeriac.sending import Outbound
    from celeriac.task import Task

#: The builtin task that runs one chunk (Celery's name; registered by ``canvas/builtins.py``).
STARMAP = "celery.starmap"
#: Chunk messages built and published per broker round trip.
BATCH_SIZE = 500


def signature_of(name: str) -> dict[str, Any]:
    """The signature dict of a call of task ``name`` without arguments, as Celery lays it out."""
    return {"task": name, "args": [], "kwargs": {}, "options": {}, "subtask_type": None, "immutable": False}


class _BadItem(Exception):
    """Internal: an item of the iterable cannot be sent (the message says which and why)."""


class Chunks:
    """The calls of ``task`` for each argument tuple of ``it``, split into chunks of ``n``.

    Made by :meth:`Task.chunks`; nothing is sent until :meth:`apply_async`,
    :meth:`delay` or a call. An iterator (a generator, ``zip(...)``) is consumed
    by the first send and cannot be sent again.
    """

    def __init__(self, task: Task, it: Iterable[Sequence[Any]], n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"{task.name}.chunks(): n must be an int >= 1, got {type(n).__name__} {n!r}")
        if n < 1:
            raise ValueError(f"{task.name}.chunks(): n must be an int >= 1, got {n}")
        if not isinstance(it, Iterable):
            raise TypeError(f"{task.name}.chunks(): it must be an iterable, got {type(it).__name__}")
        self.task = task
        self.it = it
        self.n = n
        self._consumed = False

    def __repr__(self) -> str:
        return f"<chunks: {self.task.name} in chunks of {self.n}>"

    def __call__(self, **options: Any) -> GroupResult:
        """Same as :meth:`apply_async`."""
        return self.apply_async(**options)

    def delay(self) -> GroupResult:
        """Send the chunks with default options."""
        return self.apply_async()

    def apply_async(self, **options: Any) -> GroupResult:
        """Send one ``celery.starmap`` task per chunk; return their results in chunk order.

        ``options`` are ``apply_async``'s (``queue``, ``countdown``, ``priority``,
        ...) and apply to every chunk; ``task_id`` names the group. With
        ``task_always_eager`` the chunks run here. Items are checked as they are
        read: a bad item raises TypeError naming its index (for a list or tuple,
        before anything is sent; for an iterator, after the batches read before it
        were sent, as the message says).
        """
        app = self.task.app
        if options.get("ignore_result") is None:
            options["ignore_result"] = False  # the chunk results are what .get() returns
        group = GroupResult(options.pop("task_id", None) or str(uuid.uuid4()))
        signature = signature_of(self.task.name)
        parts = enumerate(self._parts())
        try:
            while batch := list(islice(parts, BATCH_SIZE)):
                built = [self._message(app, signature, group.id, i, part, options) for i, part in batch]
                if app.conf.task_always_eager:
                    group.extend(self._run_here(app, message) for message, _ in built)
                else:
                    app.producer.publish(built)
                    group.extend(AsyncResult(message.id, app.backend, STARMAP) for message, _ in built)
        except _BadItem as exc:
            sent = f" ({len(group)} chunks before it were already sent)" if group else ""
            raise TypeError(f"{exc}{sent}") from None
        return group

    def _parts(self) -> Iterator[list[Sequence[Any]]]:
        """The chunks, read lazily; a list or tuple is checked whole before the first chunk."""
        items = iter(self.it)
        if items is self.it:
            if self._consumed:
                raise RuntimeError(
                    f"{self.task.name}.chunks() over an iterator can be sent once: it is consumed; "
                    "pass a list, or make a new chunks() from a new iterator"
                )
            self._consumed = True
        checked = isinstance(self.it, list | tuple)
        if checked:
            for index, item in enumerate(items):
                self._check(index, item)
            items = iter(self.it)
        start = 0
        while part := list(islice(items, self.n)):
            if not checked:
                for offset, item in enumerate(part):
                    self._check(start + offset, item)
            start += len(part)
            yield part

    def _check(self, index: int, item: Any) -> None:
        if not isinstance(item, list | tuple):
            raise _BadItem(
                f"{self.task.name}.chunks(): item {index} is {type(item).__name__} {item!r:.100}, "
                "expected a list or tuple of positional arguments"
            )
        try:
            self.task._check_arguments(item, {})
        except TypeError as exc:
            reason = str(exc).removeprefix(f"{self.task.name}: ")
            raise _BadItem(
                f"{self.task.name}.chunks(): item {index} {tuple(item)!r:.100}: {reason}"
            ) from None

    def _message(
        self,
        app: Celeriac,
        signature: dict[str, Any],
        group_id: str,
        index: int,
        part: list[Sequence[Any]],
        options: dict[str, Any],
    ) -> Outbound:
        kwargs = {"task": signature, "it": part}
        message, route = app.producer.build(
            STARMAP, (), kwargs, None, self.task, route_name=self.task.name, **options
        )
        return message.with_changes(group=group_id, group_index=index), route

    @staticmethod
    def _run_here(app: Celeriac, message: TaskMessage) -> AsyncResult:
        starmap = app.tasks[STARMAP]
        return starmap.apply(
            message.args, message.kwargs, task_id=message.id, throw=app.conf.task_eager_propagates
        )
