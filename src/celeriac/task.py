"""``Task``: a function the workers run, with Celery's calling API.

``@app.task`` turns a function into a :class:`Task`. Calling it runs the function
here; ``delay`` / ``apply_async`` send a message; ``apply`` runs it here as a task
(eager). ``self.retry()`` inside a bound task (``bind=True``) sends the task
again with its retry count in the message headers.
"""

from __future__ import annotations

import contextvars
import inspect
import random
import traceback as tb
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celeriac.canvas.chunks import Chunks
from celeriac.context import Request, _current, current_request, pop_request, push_request
from celeriac.errors import Ignore, MaxRetriesExceededError, Reject, Retry
from celeriac.hooks import Outcome
from celeriac.results.result import AsyncResult, EagerResult
from celeriac.signals.hooks import SignalHooks
from celeriac.states import FAILURE, RETRY, SUCCESS

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.protocol.message import TaskMessage

# ``Request`` and the request functions live in ``celeriac.context``; imported from here
# before, they still are.
__all__ = [
    "Request",
    "Task",
    "backoff_countdown",
    "current_request",
    "make_task",
    "pop_request",
    "push_request",
]


#: The task the worker (or ``apply``) is entering through ``__call__`` right now.
_invoking: contextvars.ContextVar[Task | None] = contextvars.ContextVar("celeriac_invoking", default=None)


def backoff_countdown(factor: int, retries: int, maximum: int, full_jitter: bool) -> int:
    """Celery's exponential backoff: ``factor * 2**retries``, capped, optionally jittered."""
    countdown = min(maximum, factor * (2**retries))
    if full_jitter:
        countdown = random.randrange(countdown + 1)
    return max(0, countdown)


class Task:
    """A registered task. Class attributes are its options; None means "use the setting"."""

    name: str = ""
    app: Celeriac
    bind: bool = False
    typing: bool = True
    max_retries: int | None = None
    default_retry_delay: float | None = None
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] = {}
    retry_backoff: bool | int = False
    retry_backoff_max: int = 600
    retry_jitter: bool = True
    acks_late: bool | None = None
    acks_on_failure_or_timeout: bool | None = None
    reject_on_worker_lost: bool | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool | None = None
    track_started: bool | None = None
    queue: str | None = None
    priority: int | None = None
    delivery_mode: int | str | None = None
    serializer: str | None = None
    expires: float | datetime | None = None

    #: Options ``@app.task(...)`` accepts (plus ``name``, ``bind``, ``base``).
    OPTIONS = frozenset(
        {
            "typing",
            "max_retries",
            "default_retry_delay",
            "autoretry_for",
            "dont_autoretry_for",
            "retry_kwargs",
            "retry_backoff",
            "retry_backoff_max",
            "retry_jitter",
            "acks_late",
            "acks_on_failure_or_timeout",
            "reject_on_worker_lost",
            "time_limit",
            "soft_time_limit",
            "ignore_result",
            "track_started",
            "queue",
            "priority",
            "delivery_mode",
            "serializer",
            "expires",
        }
    )

    def __init__(self) -> None:
        self._signature: inspect.Signature | None = None

    # -- the function -----------------------------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task body: the decorated function, or a subclass's override."""
        raise NotImplementedError(f"task {self.name} has no run()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task body in this process, now.

        A direct call gets its own request (``called_directly=True``), even inside
        another running task, so ``self.request`` and ``self.retry()`` never act on
        the caller's message. When the worker or ``apply`` invoke the task through
        an overridden ``__call__``, the request they pushed is kept.
        """
        if _invoking.get() is self:
            _invoking.set(None)
            return self.run(*args, **kwargs)
        token = _current.set(Request(task=self.name, args=args, kwargs=kwargs))
        try:
            return self.run(*args, **kwargs)
        finally:
            _current.reset(token)

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def request(self) -> Request:
        """The current invocation (a called-directly request outside a worker)."""
        return _current.get() or Request(task=self.name)

    def _check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        if not self.typing:
            return
        if self._signature is None:
            self._signature = inspect.signature(self.run)
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}: {exc}") from None

    # -- sending ----------------------------------------------------------------------------

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the task with these arguments; shortcut for ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send the task. Options: queue, countdown, eta, expires, priority, delivery_mode,
        time_limit, soft_time_limit, serializer, ignore_result, headers, ..."""
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        self._check_arguments(args, kwargs)
        if self.app.conf.task_always_eager:
            self.app.producer.validate(self.name, args, kwargs, self, options)  # same checks as a send
            return self.apply(args, kwargs, task_id=task_id, throw=self.app.conf.task_eager_propagates)
        return self.app.send_task(self.name, args, kwargs, task_id=task_id, task=self, **options)

    def apply_many(self, calls: Iterable[Sequence[Any]], **options: Any) -> list[AsyncResult]:
        """Send one task per argument tuple in ``calls``, in one broker round trip."""
        batch = [tuple(args) for args in calls]
        for args in batch:
            self._check_arguments(args, {})
        return self.app.send_many(self.name, batch, task=self, **options)

    def chunks(self, it: Iterable[Sequence[Any]], n: int) -> Chunks:
        """Split the calls in ``it`` (one argument tuple per call) into tasks of at most ``n`` calls.

        Nothing is sent until ``apply_async()`` / ``delay()`` on the result; each
        chunk runs as one ``celery.starmap`` task (Celery's layout), and
        ``.get()`` on what that returns gives one list of return values per chunk.
        """
        return Chunks(self, it, n)

    def report_name(self, message: TaskMessage) -> str:
        """The name the worker logs and counts a run of ``message`` under (the task's own)."""
        return self.name

    def AsyncResult(self, task_id: str) -> AsyncResult:
        """A handle on the result of ``task_id``."""
        return self.app.AsyncResult(task_id, task_name=self.name)

    # -- running here -----------------------------------------------------------------------

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        retries: int = 0,
        throw: bool | None = None,
        **_options: Any,
    ) -> EagerResult:
        """Run the task in this process as the worker would (retries included), sending the
        worker's task signals as Celery does in eager mode."""
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        task_id = task_id or str(uuid.uuid4())
        signalled = SignalHooks(self.app)
        while True:
            request = Request(
                id=task_id,
                task=self.name,
                args=args,
                kwargs=kwargs,
                retries=retries,
                root_id=task_id,
                is_eager=True,
                called_directly=False,
            )
            token = push_request(request)
            try:
                signalled.before_task(request)
                value = self.call_with_autoretry(args, kwargs)
            except Retry as retry:
                signalled.before_retry(request, retry)
                signalled.after_task(request, Outcome(RETRY, exc=retry.exc or retry))
                retries += 1
                continue
            except Exception as exc:
                formatted = tb.format_exc()
                signalled.after_task(request, Outcome(FAILURE, exc=exc, traceback=formatted))
                if throw:
                    raise
                return EagerResult(task_id, FAILURE, exc, formatted, self.name)
            else:
                signalled.after_task(request, Outcome(SUCCESS, value))
            finally:
                pop_request(token)
            return EagerResult(task_id, SUCCESS, value, None, self.name)

    def _invoke(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Run the body under the request already pushed (through a custom ``__call__`` if any)."""
        if type(self).__call__ is Task.__call__:
            return self.run(*args, **kwargs)
        token = _invoking.set(self)
        try:
            return self(*args, **kwargs)
        finally:
            _invoking.reset(token)

    def call_with_autoretry(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Call the body; an exception listed in ``autoretry_for`` becomes ``self.retry``."""
        if not self.autoretry_for:
            return self._invoke(args, kwargs)
        try:
            return self._invoke(args, kwargs)
        except (Retry, Ignore, Reject):
            raise
        except self.autoretry_for as exc:
            if self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for):
                raise
            retry_kwargs = dict(self.retry_kwargs)
            if self.retry_backoff and "countdown" not in retry_kwargs:
                factor = 1 if self.retry_backoff is True else int(self.retry_backoff)
                retry_kwargs["countdown"] = backoff_countdown(
                    factor, self.request.retries, self.retry_backoff_max, self.retry_jitter
                )
            raise self.retry(exc=exc, **retry_kwargs) from exc

    # -- retrying ---------------------------------------------------------------------------

    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Run this task again (same id, retries + 1): build the next attempt and raise
        :class:`Retry` carrying it.

        The worker catching the Retry stores RETRY, publishes the next attempt, then
        settles this delivery. With ``throw=False`` the worker stores and publishes it
        at once and the Retry is returned: the task goes on, and what it then returns
        or raises is its outcome (as in Celery). Past ``max_retries`` the given
        ``exc`` is re-raised, or :class:`MaxRetriesExceededError` if there is none.
        """
        request = self.request
        if request.called_directly:
            raise RuntimeError(f"{self.name}.retry() called outside a worker: call the task with .delay()")
        limit = max_retries if max_retries is not None else self.max_retries
        if limit is None and not self._sets_max_retries():
            limit = self.app.conf.task_max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"can't retry {self.name}[{request.id}]: max_retries={limit} reached"
            )
        if eta is None and countdown is None:
            delay = self.default_retry_delay
            countdown = self.app.conf.task_default_retry_delay if delay is None else delay
        when = eta if eta is not None else countdown
        outbound = None
        if not request.is_eager:
            outbound = self.app.producer.retry(
                request, args=args, kwargs=kwargs, eta=eta, countdown=countdown, **options
            )
        retry = Retry(exc=exc, when=when, outbound=outbound)
        if throw:
            raise retry
        if request.retry_handler is not None:
            request.retry_handler(retry)  # sent now; the task goes on and its outcome stands
        return retry

    def _sets_max_retries(self) -> bool:
        """True when the task or a base class below Task chose max_retries (None = unlimited)."""
        return any("max_retries" in cls.__dict__ for cls in type(self).__mro__ if cls is not Task)

    # -- handlers (override in a base class) ------------------------------------------------

    def on_success(self, retval: Any, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Called in the worker after the task returned."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: str | None,
    ) -> None:
        """Called in the worker after the task raised."""

    def on_retry(
        self,
        exc: BaseException,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: str | None,
    ) -> None:
        """Called in the worker when the task asked to be retried."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: str | None,
    ) -> None:
        """Called in the worker after any outcome."""


def make_task(
    app: Celeriac,
    fun: Callable[..., Any],
    name: str,
    base: type[Task],
    bind: bool,
    options: Mapping[str, Any],
) -> Task:
    """Build the Task subclass for ``fun`` and return its single instance."""
    run = fun if bind else staticmethod(fun)
    attrs: dict[str, Any] = {
        "name": name,
        "app": app,
        "bind": bind,
        "run": run,
        "__doc__": fun.__doc__,
        "__module__": fun.__module__,
        "__wrapped__": fun,
        **options,
    }
    cls = type(fun.__name__, (base,), attrs)
    return cls()
