"""``AsyncResult``: the handle ``delay`` and ``apply_async`` return; ``ResultSet``: the
handles of several tasks; ``GroupResult``: those of tasks sent together (``group``,
``Task.chunks``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celeriac.context import default_app, in_worker_task
from celeriac.errors import ConfigurationError, TimeoutError
from celeriac.protocol import serializers
from celeriac.results.base import ResultBackend, ResultRecord
from celeriac.states import EXCEPTION_STATES, FAILURE, PENDING, READY_STATES, SUCCESS

if TYPE_CHECKING:
    from celeriac.app import Celeriac


class AsyncResult:
    """The state and result of a task, read from the result backend.

    As in Celery, ``AsyncResult(task_id)`` reads the result backend of the default
    app (the last app created), ``AsyncResult(task_id, app=app)`` that of ``app``,
    and ``AsyncResult(task_id, backend)`` that backend. The app's backend is looked
    up when the handle first reads, so a handle never opens a backend it does not use.
    """

    def __init__(
        self,
        id: str,
        backend: ResultBackend | None = None,
        task_name: str | None = None,
        app: Celeriac | None = None,
        parent: AsyncResult | None = None,
    ) -> None:
        self.id = id
        self.task_name = task_name
        #: the app whose result backend is read (None: the default app, when the handle reads)
        self.app = app if app is not None or backend is not None else default_app()
        #: the task this one was sent from, when the caller says so (Celery's ``parent``)
        self.parent = parent
        self._given_backend = backend

    @property
    def task_id(self) -> str:
        """Same as ``id`` (Celery's alias)."""
        return self.id

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def backend(self) -> ResultBackend | None:
        """The result backend this handle reads (None: the app has none)."""
        if self._given_backend is not None:
            return self._given_backend
        app = self.app if self.app is not None else default_app()
        return None if app is None else app.backend

    def _backend(self) -> ResultBackend:
        backend = self.backend
        if backend is None:
            if self.app is None and default_app() is None:
                raise ConfigurationError(
                    f"AsyncResult({self.id!r}) has no app to read results from: create the app first, "
                    "or pass app= (or a result backend)"
                )
            raise ConfigurationError(
                "no result backend is configured: set result_backend (e.g. 'sqlite:///celeriac.db') "
                "to read task results"
            )
        return backend

    def _record(self) -> ResultRecord | None:
        return self._backend().get(self.id)

    @property
    def state(self) -> str:
        """PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, or a custom state the task set with
        ``update_state`` (e.g. ``PROGRESS``). Unknown ids are PENDING."""
        record = self._record()
        return record.state if record is not None else PENDING

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception of a failed task, or, while the task runs, what its
        state carries: the ``meta`` of ``update_state`` (a custom state such as ``PROGRESS``),
        STARTED's ``{"pid", "hostname"}``; None when nothing is known."""
        record = self._record()
        if record is None:
            return None
        if record.meta and record.result is None and record.state not in EXCEPTION_STATES:
            return record.meta
        return record.result

    info = result

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failed task."""
        record = self._record()
        return record.traceback if record is not None else None

    @property
    def date_done(self) -> datetime | None:
        """When the task reached its current state (UTC)."""
        record = self._record()
        if record is None or record.date_done is None:
            return None
        return datetime.fromtimestamp(record.date_done, UTC)

    @property
    def worker(self) -> str | None:
        """Node and child that ran the task."""
        record = self._record()
        return record.worker if record is not None else None

    @property
    def name(self) -> str | None:
        """The task's name, as stored with the result."""
        record = self._record()
        return record.name if record is not None else self.task_name

    @property
    def retries(self) -> int:
        """How many times the task was retried before its current state."""
        record = self._record()
        return record.retries if record is not None else 0

    def ready(self) -> bool:
        """True once the task succeeded, failed or was revoked."""
        return self.state in READY_STATES

    def successful(self) -> bool:
        """True if the task returned a value."""
        return self.state == SUCCESS

    def failed(self) -> bool:
        """True if the task raised."""
        return self.state == FAILURE

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float | None = None,
        disable_sync_subtasks: bool = True,
    ) -> Any:
        """Wait for the result and return it; re-raise the task's exception if ``propagate``.

        Raises :class:`~celeriac.errors.TimeoutError` after ``timeout`` seconds.
        ``interval`` is accepted for Celery compatibility; waiting is driven by the
        backend's change notification.
        """
        if disable_sync_subtasks and in_worker_task.get():
            raise RuntimeError(
                "never call result.get() inside a task: it can deadlock the worker; "
                "pass disable_sync_subtasks=False if you really must"
            )
        record = self._backend().wait(self.id, timeout)
        if record is None:
            raise TimeoutError(f"task {self.task_name or ''}[{self.id}] not ready after {timeout} s")
        if record.state != SUCCESS and propagate:
            exc = record.result
            if isinstance(exc, BaseException):
                raise exc
        return record.result

    wait = get

    def forget(self) -> None:
        """Delete the stored result."""
        self._backend().forget(self.id)


class EagerResult(AsyncResult):
    """The result of a task run in the calling process (``task_always_eager`` or ``apply``)."""

    def __init__(
        self, id: str, state: str, value: Any, traceback: str | None = None, task_name: str | None = None
    ) -> None:
        super().__init__(id, None, task_name)
        self._state = state
        self._value = value
        self._traceback = traceback

    def _record(self) -> ResultRecord | None:
        return ResultRecord(self.id, self._state, self._value, self._traceback, self.task_name)

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float | None = None,
        disable_sync_subtasks: bool = True,
    ) -> Any:
        if self._state != SUCCESS and propagate and isinstance(self._value, BaseException):
            raise self._value
        return self._value

    wait = get

    def forget(self) -> None:
        """Nothing is stored for an eager result."""


@contextmanager
def allow_join_result() -> Iterator[None]:
    """Inside a task, let ``result.get()`` wait in the block (Celery's ``allow_join_result``).

    The same as passing ``disable_sync_subtasks=False`` to each ``get()``: waiting for
    another task from a task can deadlock the worker when every child waits.
    """
    token = in_worker_task.set(False)
    try:
        yield
    finally:
        in_worker_task.reset(token)


class ResultSet(list[AsyncResult]):
    """Several results handled as one (Celery's ``ResultSet``): a list of :class:`AsyncResult`."""

    def __init__(self, results: Iterable[AsyncResult] = ()) -> None:
        super().__init__(results)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(result.id for result in self)}]>"

    @property
    def results(self) -> list[AsyncResult]:
        """The result handles, as a plain list (Celery's attribute)."""
        return list(self)

    def add(self, result: AsyncResult) -> None:
        """Add ``result`` unless it is in the set already."""
        if result not in self:
            self.append(result)

    def discard(self, result: AsyncResult) -> None:
        """Remove ``result`` if it is in the set."""
        if result in self:
            super().remove(result)

    def remove(self, result: AsyncResult) -> None:
        """Remove ``result``; KeyError if it is not in the set (as Celery)."""
        if result not in self:
            raise KeyError(result)
        super().remove(result)

    def update(self, results: Iterable[AsyncResult]) -> None:
        """Add each of ``results`` that is not in the set yet."""
        for result in results:
            self.add(result)

    def ready(self) -> bool:
        """True once every task has finished."""
        return all(result.ready() for result in self)

    def waiting(self) -> bool:
        """True while any task has not finished."""
        return not self.ready()

    def successful(self) -> bool:
        """True if every task returned a value."""
        return all(result.successful() for result in self)

    def failed(self) -> bool:
        """True if any task raised."""
        return any(result.failed() for result in self)

    def completed_count(self) -> int:
        """How many of the tasks returned a value."""
        return sum(1 for result in self if result.successful())

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float | None = None,
        disable_sync_subtasks: bool = True,
    ) -> list[Any]:
        """Wait for every task and return their return values, in order.

        ``timeout`` bounds the whole wait (:class:`~celeriac.errors.TimeoutError`
        after that many seconds). With ``propagate`` the first failed task's
        exception is raised; without, the exception takes that task's place in
        the list.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for result in self:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            values.append(result.get(remaining, propagate, interval, disable_sync_subtasks))
        return values

    join = get

    def forget(self) -> None:
        """Delete the stored result of every task."""
        for result in self:
            result.forget()


#: Where :meth:`GroupResult.save` keeps a group's member ids (Celery's key for a saved group).
GROUP_KEY = "celery-taskset-meta-{}"


class GroupResult(ResultSet):
    """The results of tasks sent together (a ``group``, or one per chunk of ``Task.chunks``), in
    sending order.

    A :class:`ResultSet`; ``id`` is the group id every message of the group carries
    in its ``group`` header. :meth:`save` keeps the member ids in the app's store, so
    ``GroupResult.restore(group_id)`` finds the group again from another process.
    """

    def __init__(
        self,
        id: str,
        results: Iterable[AsyncResult] = (),
        parent: AsyncResult | None = None,
        app: Celeriac | None = None,
    ) -> None:
        super().__init__(results)
        self.id = id
        self.parent = parent
        self.app = app

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(result.id for result in self)}]>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and list.__eq__(self, other)
        return list.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def _app(self) -> Celeriac:
        app = self.app or next((r.app for r in self if r.app is not None), None) or default_app()
        if app is None:
            raise ConfigurationError(f"GroupResult({self.id!r}) has no app: pass app=")
        return app

    def save(self) -> GroupResult:
        """Keep the member ids under the group id (for ``result_expires``), so :meth:`restore`
        can find them; returns the group."""
        app = self._app()
        members = [[result.id, result.task_name] for result in self]
        ttl = app.conf.result_expires
        app.store.set(GROUP_KEY.format(self.id), serializers.json_dumps(members), ttl=ttl or None)
        return self

    def delete(self) -> None:
        """Forget what :meth:`save` kept."""
        self._app().store.delete(GROUP_KEY.format(self.id))

    @classmethod
    def restore(cls, id: str, backend: Any = None, app: Celeriac | None = None) -> GroupResult | None:
        """The group :meth:`save` kept under ``id`` (None if none was saved, or it expired)."""
        app = app or default_app()
        if app is None:
            raise ConfigurationError(f"GroupResult.restore({id!r}) has no app: pass app=")
        raw = app.store.get(GROUP_KEY.format(id))
        if raw is None:
            return None
        members = serializers.json_loads(raw)
        return cls(id, [AsyncResult(task_id, task_name=name, app=app) for task_id, name in members], app=app)
