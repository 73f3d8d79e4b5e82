"""``Task``: a function the workers run, with Celery's calling API.

``@app.task`` turns a function into a :class:`Task`. Calling it runs the function
here; ``delay`` / ``apply_async`` send a message; ``apply`` runs it here as a task
(eager). ``self.retry()`` inside a bound task (``bind=True``) sends the task
again with its retry count in the message headers; ``self.update_state()`` stores a
state (a custom one such as ``PROGRESS`` too) while the task runs.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import random
import socket
import traceback as tb
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celeriac.canvas.chunks import Chunks
from celeriac.canvas.hooks import CanvasHooks
from celeriac.canvas.signature import Signature
from celeriac.config import TASK_OPTIONS, rate_limit_refused
from celeriac.context import Request, _current, current_request, pop_request, push_request
from celeriac.einfo import ExceptionInfo
from celeriac.errors import ConfigurationError, Ignore, MaxRetriesExceededError, Reject, Retry
from celeriac.hooks import Outcome
from celeriac.results.base import PendingResult
from celeriac.results.result import AsyncResult, EagerResult
from celeriac.sending import embed_of
from celeriac.signals.hooks import SignalHooks
from celeriac.states import EXCEPTION_STATES, FAILURE, READY_STATES, RETRY, SUCCESS

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
    "refuse_rate_limit",
]


logger = logging.getLogger("celeriac.task")

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

    #: Celery's rate limit ('10/m'): not implemented yet, so a task whose class sets it is
    #: refused at registration rather than run without its limit.
    rate_limit: str | None = None

    #: Options ``@app.task(...)`` accepts (plus ``name``, ``bind``, ``base``); ``task_annotations``
    #: may set them too.
    OPTIONS = TASK_OPTIONS

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
            throw = self.app.conf.task_eager_propagates
            return self.apply(args, kwargs, task_id=task_id, throw=throw, **options)
        return self.app.send_task(self.name, args, kwargs, task_id=task_id, task=self, **options)

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """``delay()`` when the current Django database transaction commits (Celery's
        ``DjangoTask``): a task that reads what the caller wrote finds it. Returns nothing,
        as the task is not sent yet; outside a transaction it is sent at once."""
        from celeriac.fixups.django import on_commit

        on_commit(functools.partial(self.delay, *args, **kwargs))

    def apply_async_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """``apply_async()`` when the current Django database transaction commits."""
        from celeriac.fixups.django import on_commit

        on_commit(functools.partial(self.apply_async, *args, **kwargs))

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

    def signature(self, args: Sequence[Any] | None = None, *starargs: Any, **starkwargs: Any) -> Signature:
        """A signature of a call of this task (Celery's ``Task.signature``): ``args``, ``kwargs``,
        ``options`` and ``immutable`` as :class:`~celeriac.canvas.signature.Signature` takes them."""
        starkwargs.setdefault("app", self.app)
        return Signature(self, args, *starargs, **starkwargs)

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of ``self(*args, **kwargs)``; arguments given later are put first."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature of ``self(*args, **kwargs)``: arguments given later are ignored."""
        return self.signature(args, kwargs, immutable=True)

    def report_name(self, message: TaskMessage) -> str:
        """The name the worker logs and counts a run of ``message`` under (the task's own)."""
        return self.name

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:
        """A handle on the result of ``task_id`` (keyword arguments as ``app.AsyncResult``)."""
        return self.app.AsyncResult(task_id, task_name=self.name, **kwargs)

    # -- running here -----------------------------------------------------------------------

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        retries: int = 0,
        throw: bool | None = None,
        **options: Any,
    ) -> EagerResult:
        """Run the task in this process as the worker would (``before_start`` and retries included),
        sending the worker's task signals as Celery does in eager mode.

        The request is Celery's eager one: ``is_eager``, this host's name, the ``headers``
        and ``priority`` options, and ``delivery_info`` saying it is eager.
        """
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        task_id = task_id or str(uuid.uuid4())
        signalled = SignalHooks(self.app)
        canvas = CanvasHooks(self.app)
        embed = embed_of(options)
        while True:
            request = Request(
                id=task_id,
                task=self.name,
                args=args,
                kwargs=kwargs,
                retries=retries,
                root_id=task_id,
                hostname=socket.gethostname(),
                delivery_info={
                    "is_eager": True,
                    "exchange": options.get("exchange"),
                    "routing_key": options.get("routing_key"),
                    "priority": options.get("priority"),
                },
                headers=options.get("headers"),
                priority=options.get("priority"),
                is_eager=True,
                called_directly=False,
                callbacks=embed["callbacks"],
                errbacks=embed["errbacks"],
                chain=embed["chain"],
            )
            token = push_request(request)
            try:
                signalled.before_task(request)
                self.before_start(task_id, args, kwargs)
                value = self.call_with_autoretry(args, kwargs)
            except Retry as retry:
                signalled.before_retry(request, retry)
                outcome = Outcome(RETRY, exc=retry.exc or retry, traceback=tb.format_exc())
                self._eager_handlers(request, outcome)
                signalled.after_task(request, outcome)
                retries += 1
                continue
            except Exception as exc:
                formatted = tb.format_exc()
                outcome = Outcome(FAILURE, exc=exc, traceback=formatted)
                self._eager_handlers(request, outcome)
                signalled.after_task(request, outcome)
                canvas.after_task(request, outcome)
                if throw:
                    raise
                return EagerResult(task_id, FAILURE, exc, formatted, self.name)
            else:
                outcome = Outcome(SUCCESS, value)
                self._eager_handlers(request, outcome)
                signalled.after_task(request, outcome)
                canvas.after_task(request, outcome)
            finally:
                pop_request(token)
            return EagerResult(task_id, SUCCESS, value, None, self.name)

    def call_handlers(self, request: Request, outcome: Outcome) -> None:
        """After a run: ``on_success``, ``on_failure`` or ``on_retry`` by its outcome, then
        ``after_return``, with Celery's arguments (``einfo`` an :class:`ExceptionInfo`).

        The worker and :meth:`apply` both call this; what a handler raises is the caller's.
        """
        task_id, args, kwargs = request.id or "", request.args, request.kwargs
        einfo = None
        if outcome.state in (FAILURE, RETRY) and outcome.exc is not None:
            einfo = ExceptionInfo.from_exception(outcome.exc, outcome.traceback)
        if outcome.state == SUCCESS:
            self.on_success(outcome.result, task_id, args, kwargs)
        elif outcome.state == FAILURE and outcome.exc is not None:
            self.on_failure(outcome.exc, task_id, args, kwargs, einfo)
        elif outcome.state == RETRY and outcome.exc is not None:
            self.on_retry(outcome.exc, task_id, args, kwargs, einfo)
        retval = outcome.result if outcome.state == SUCCESS else outcome.exc
        self.after_return(outcome.state, retval, task_id, args, kwargs, einfo)

    def _eager_handlers(self, request: Request, outcome: Outcome) -> None:
        try:
            self.call_handlers(request, outcome)
        except Exception:
            logger.exception("handler of %s[%s] failed", self.name, request.id)

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

    # -- reporting progress -----------------------------------------------------------------

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **kwargs: Any
    ) -> None:
        """Store ``state`` with ``meta`` for ``task_id`` (default: the running task), at once.

        ``state`` may be any string, so a task reports progress with a state of its own::

            self.update_state(state="PROGRESS", meta={"current": i, "total": n})

        and ``AsyncResult.state`` / ``.info`` read ``"PROGRESS"`` and the meta dict. A
        custom state is not ready: ``get()`` waits on for the task's outcome, which
        replaces it. A ready state set here is stored like the task's own
        (``FAILURE`` with Celery's ``{"exc_type", "exc_message"}`` meta, then ``raise
        Ignore()``: the task fails as it said); but a SUCCESS stored here stands, so
        the task's return value does not replace it (a warning says so).
        ``traceback=`` is stored too; other keyword arguments are ignored, as Celery's
        backends ignore them.

        Run eagerly or called directly, the task's own state is not stored: the
        :class:`EagerResult` holds the outcome, and nothing would ever replace the state
        (Celery writes it to the result backend, where it then stays). Without a result
        backend nothing could read the state: ConfigurationError (Celery drops it
        without a word).
        """
        if not isinstance(state, str) or not state:
            raise ValueError(f"{self.name}.update_state() needs a state, e.g. state='PROGRESS'")
        request = self.request
        if task_id is None or task_id == request.id:
            if request.is_eager or request.called_directly:
                return
            task_id = request.id
        backend = self.app.backend
        if backend is None:
            raise ConfigurationError(
                f"{self.name}.update_state(state={state!r}): no result backend is configured, so no one "
                "could read the state; set result_backend (e.g. 'redis://localhost:6379/0'), or remove "
                "the call (Celery drops it silently when there is no backend)"
            )
        assert task_id is not None
        if state == SUCCESS and task_id == request.id:
            logger.warning(
                "%s[%s] stored SUCCESS with update_state: a stored SUCCESS is final in celeriac, so what "
                "the task returns will not replace it (in Celery it does); return the value instead",
                self.name,
                task_id,
            )
        backend.store(self._state_record(task_id, state, meta, request, kwargs.get("traceback")))

    def _state_record(
        self, task_id: str, state: str, meta: Any, request: Request, traceback: str | None
    ) -> PendingResult:
        """What ``update_state`` stores: a ready or exception state keeps ``meta`` as its value;
        an unfinished one keeps a dict as its meta (as STARTED keeps its pid), anything else
        as its value."""
        as_meta = isinstance(meta, dict) and state not in READY_STATES and state not in EXCEPTION_STATES
        return PendingResult(
            task_id,
            state,
            None if as_meta else meta,
            traceback,
            request.task or self.name,
            request.retries,
            f"{request.hostname}/{os.getpid()}" if request.hostname else None,
            dict(meta) if as_meta else {},
        )

    # -- handlers (override in a base class) ------------------------------------------------

    def before_start(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Called in the worker (and by ``apply``) before the task body, with its request current.

        What it raises is the task's outcome, as if the body had raised it.
        """

    def on_success(self, retval: Any, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Called in the worker after the task returned."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: ExceptionInfo,
    ) -> None:
        """Called in the worker after the task raised; ``einfo`` holds the exception and its traceback."""

    def on_retry(
        self,
        exc: BaseException,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: ExceptionInfo,
    ) -> None:
        """Called in the worker when the task asked to be retried; ``einfo`` holds the reason."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: ExceptionInfo | None,
    ) -> None:
        """Called in the worker after any outcome (``einfo``: None unless the task raised)."""


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
    refuse_rate_limit(cls)
    return cls()


def refuse_rate_limit(cls: type[Task]) -> None:
    """Refuse a task class whose ``rate_limit`` is set (here or on a base class): rate limits are
    not implemented yet, and a task that runs without its limit would silently differ from Celery."""
    if cls.rate_limit is None:
        return
    owner = next(c for c in cls.__mro__ if "rate_limit" in c.__dict__)
    where = "@app.task option" if owner is cls else f"attribute of base class {owner.__qualname__}"
    raise rate_limit_refused(cls.name, cls.rate_limit, where)
