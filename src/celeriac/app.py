"""``Celeriac`` (also importable as ``Celery``): settings, task registry, sending.

One app object holds the settings, the registered tasks, and, created on first
use, the broker connection, the result backend and the router. Producers call
``send_task`` (through ``Task.delay`` / ``apply_async``); the worker reads the
registry and the hooks.
"""

from __future__ import annotations

import importlib
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, overload
from zoneinfo import ZoneInfo

from celeriac import _state, config
from celeriac.brokers import Broker, BrokerOptions, Outgoing, from_url
from celeriac.chunks import BUILTIN_TASKS, register_builtins
from celeriac.errors import ConfigurationError, MessageTooLargeError, NotRegisteredError
from celeriac.hooks import HookChain, Hooks
from celeriac.protocol import serializers
from celeriac.protocol.entities import Queue
from celeriac.protocol.message import Envelope, TaskMessage, encode
from celeriac.results import ResultBackend, backend_from_url
from celeriac.results.result import AsyncResult
from celeriac.routing import Route, Router
from celeriac.task import Request, Task, current_request, make_task

#: apply_async / send_task options celeriac understands.
SEND_OPTIONS = frozenset(
    {
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
        "retries",
        "shadow",
        "reply_to",
        "parent_id",
        "root_id",
    }
)
#: Celery options that change nothing here (connection handling is the broker's job).
IGNORED_OPTIONS = frozenset(
    {
        "retry",
        "retry_policy",
        "add_to_parent",
        "publisher",
        "producer",
        "connection",
        "mandatory",
        "immediate",
        "declare",
        "exchange_type",
    }
)
#: Celery options celeriac does not implement, with what to do instead.
UNSUPPORTED_OPTIONS = {
    "link": "callbacks (link=) are not supported: call the next task at the end of the first",
    "link_error": "error callbacks (link_error=) are not supported: use a Task.on_failure handler",
    "chain": "chains are not supported: call the next task at the end of the first",
    "chord": "chords are not supported",
    "compression": "message compression is not supported",
}


#: Settings whose change means a new broker / result backend / router.
_BROKER_SETTINGS = frozenset(
    {
        "broker_url",
        "broker_transport_options",
        "broker_lease_timeout",
        "task_delivery_limit",
        "broker_pool_limit",
        "broker_pool_timeout",
        "broker_connection_timeout",
        "task_publish_retry",
        "task_publish_retry_policy",
    }
)
_BACKEND_SETTINGS = frozenset(
    {"result_backend", "result_serializer", "result_accept_content", "accept_content", "result_expires"}
)
_ROUTER_SETTINGS = frozenset(
    {
        "task_queues",
        "task_routes",
        "task_default_queue",
        "task_default_delivery_mode",
        "task_default_priority",
        "task_queue_max_priority",
        "task_create_missing_queues",
    }
)


def _optional_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    seconds = _seconds_option(name, value)
    if seconds < 0:
        raise ConfigurationError(f"{name}={value!r}: expected a number of seconds >= 0")
    return seconds


def _optional_int(name: str, value: Any, low: int, high: int | None = None) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name}={value!r}: expected an integer {bounds}")
    return value


def _seconds_option(name: str, value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name}={value!r}: expected a number of seconds")
    return float(value)


class Celeriac:
    """A celeriac application: settings, tasks, and the way to send them."""

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        include: Sequence[str] | None = None,
        config_source: Any = None,
        set_as_current: bool = True,
        **settings: Any,
    ) -> None:
        self.main = main
        self._declared: set[str] = set()
        self.conf = config.Settings(listener=self._reset)
        if config_source is not None:
            self.config_from_object(config_source)
        explicit: dict[str, Any] = dict(settings)
        if broker is not None:
            explicit["broker_url"] = broker
        if backend is not None:
            explicit["result_backend"] = backend
        if include is not None:
            explicit["include"] = include
        if explicit:
            self.conf.update(explicit)
            self.conf.apply_environment()
        self.tasks: dict[str, Task] = {}
        register_builtins(self)
        self._extra_hooks: list[Hooks] = []
        self.origin = f"gen{os.getpid()}@{socket.gethostname()}"
        if set_as_current:
            _state.set_default_app(self)

    def __repr__(self) -> str:
        return f"<Celeriac {self.main or '__main__'}>"

    # -- configuration ----------------------------------------------------------------------

    def config_from_object(self, obj: Any, namespace: str | None = None, silent: bool = False) -> None:
        """Load settings from a module, import path, class or mapping (environment still wins)."""
        try:
            values = config.from_object(obj, namespace)
        except ConfigurationError:
            if silent:
                return
            raise
        self.conf.update(values)
        self.conf.apply_environment()

    def _reset(self, changed: frozenset[str]) -> None:
        """Settings changed: rebuild what depends on them (and only that) on next use.

        An in-memory broker or backend is kept unless its own settings change, so
        queued messages and stored results survive e.g. a worker option override.
        """
        stale: set[str] = set()
        if changed & _BROKER_SETTINGS:
            stale |= {"broker", "backend", "hooks"}
            self._declared.clear()
        if changed & _BACKEND_SETTINGS:
            stale |= {"backend", "hooks"}
        if changed & _ROUTER_SETTINGS:
            stale.add("router")
            self._declared.clear()
        for name in stale:
            self.__dict__.pop(name, None)

    @cached_property
    def broker(self) -> Broker:
        """The broker named by ``broker_url`` (connected on first use)."""
        options = BrokerOptions(
            lease_seconds=self.conf.broker_lease_timeout,
            delivery_limit=self.conf.task_delivery_limit,
            transport_options=dict(self.conf.broker_transport_options),
            pool_limit=self.conf.broker_pool_limit,
            pool_timeout=self.conf.broker_pool_timeout,
            connect_timeout=self.conf.broker_connection_timeout,
            publish_retry=self.conf.task_publish_retry,
            publish_retry_policy=dict(self.conf.task_publish_retry_policy),
        )
        return from_url(self.conf.broker_url, options)

    @cached_property
    def backend(self) -> ResultBackend | None:
        """The result backend: ``result_backend``, else the broker's SQLite file, else None."""
        url = self.conf.result_backend
        if url is None:
            scheme = self.conf.broker_url.split("://", 1)[0]
            url = self.conf.broker_url if scheme in ("sqlite", "memory") else None
        if url is None:
            return None
        return backend_from_url(
            url,
            self.conf.result_serializer,
            self.conf.result_accept_content or self.conf.accept_content,
            self.conf.result_expires,
        )

    @cached_property
    def router(self) -> Router:
        """Routes built from ``task_queues`` and ``task_routes``."""
        return Router(
            self.conf.task_queues,
            self.conf.task_routes,
            self.conf.task_default_queue,
            self.conf.task_default_delivery_mode,
            self.conf.task_default_priority,
            self.conf.task_create_missing_queues,
            self.conf.task_queue_max_priority,
        )

    @cached_property
    def hooks(self) -> HookChain:
        """Hooks the worker runs: results (when a backend is configured), then added ones."""
        from celeriac.results.hooks import ResultHooks

        chain = HookChain()
        if self.backend is not None:
            chain.add(ResultHooks(self))
        for hooks in self._extra_hooks:
            chain.add(hooks)
        return chain

    def add_hooks(self, hooks: Hooks) -> None:
        """Register lifecycle hooks for workers of this app."""
        self._extra_hooks.append(hooks)
        self.__dict__.pop("hooks", None)

    def import_task_modules(self) -> None:
        """Import the modules named in ``include`` and ``imports`` (worker start)."""
        for module in (*self.conf.include, *self.conf.imports):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigurationError(
                    f"cannot import task module {module!r} (from include/imports): {exc}"
                ) from exc

    # -- tasks ------------------------------------------------------------------------------

    def gen_task_name(self, fun: Callable[..., Any]) -> str:
        """``module.function``; functions in ``__main__`` take the app's main name."""
        module = fun.__module__
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{fun.__name__}"

    @overload
    def task(self, fun: Callable[..., Any]) -> Task: ...
    @overload
    def task(
        self, *, name: str | None = ..., bind: bool = ..., base: type[Task] | None = ..., **options: Any
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(self, fun: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Decorator: register a function as a task (``@app.task`` or ``@app.task(...)``)."""

        def decorate(function: Callable[..., Any]) -> Task:
            return self.register(function, **options)

        return decorate(fun) if fun is not None else decorate

    def register(
        self,
        fun: Callable[..., Any],
        name: str | None = None,
        bind: bool = False,
        base: type[Task] | None = None,
        **options: Any,
    ) -> Task:
        """Register ``fun`` as a task and return it."""
        unknown = set(options) - Task.OPTIONS
        if unknown:
            bad = sorted(unknown)[0]
            raise ConfigurationError(
                f"@task option {bad!r} is not known{config.did_you_mean(bad, Task.OPTIONS)}"
            )
        task = make_task(self, fun, name or self.gen_task_name(fun), base or Task, bind, options)
        self.tasks[task.name] = task
        return task

    def task_names(self, builtins: bool = False) -> list[str]:
        """Names of the registered tasks, sorted; the builtin ``celery.*`` ones only if asked."""
        return sorted(name for name in self.tasks if builtins or name not in BUILTIN_TASKS)

    def get_task(self, name: str) -> Task:
        """The registered task ``name``; NotRegisteredError names the known ones."""
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(self.task_names()[:20]) or "none"
            raise NotRegisteredError(f"task {name!r} is not registered (known: {known})") from None

    # -- sending ----------------------------------------------------------------------------

    def _check_options(self, options: Mapping[str, Any]) -> None:
        for key in options:
            if key in SEND_OPTIONS or key in IGNORED_OPTIONS:
                continue
            if key in UNSUPPORTED_OPTIONS:
                raise ConfigurationError(UNSUPPORTED_OPTIONS[key])
            raise ConfigurationError(
                f"apply_async option {key!r} is not known{config.did_you_mean(key, SEND_OPTIONS)}"
            )

    def _aware(self, value: Any, name: str) -> datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ConfigurationError(f"{name}={value!r} is not an ISO 8601 date-time") from None
        if not isinstance(value, datetime):
            raise ConfigurationError(f"{name}={value!r}: expected a datetime")
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(self.conf.timezone))
        return value

    def _times(
        self, options: Mapping[str, Any], task: Task | None
    ) -> tuple[datetime | None, datetime | None]:
        now = datetime.now(UTC)
        eta = None
        if options.get("countdown") is not None:
            eta = now + timedelta(seconds=_seconds_option("countdown", options["countdown"]))
        elif options.get("eta") is not None:
            eta = self._aware(options["eta"], "eta")
        expires = options.get("expires", task.expires if task is not None else None)
        if expires is not None:
            if isinstance(expires, int | float | timedelta) and not isinstance(expires, bool):
                expires = now + timedelta(seconds=_seconds_option("expires", expires))
            else:
                expires = self._aware(expires, "expires")
        return eta, expires

    def _route(
        self,
        name: str,
        args: Any,
        kwargs: Any,
        options: Mapping[str, Any],
        task: Task | None,
        route_name: str | None = None,
    ) -> Route:
        merged = dict(options)
        if task is not None:
            for key in ("queue", "priority", "delivery_mode"):
                if merged.get(key) is None and getattr(task, key) is not None:
                    merged[key] = getattr(task, key)
        if route_name is not None and route_name != name:
            return self.router.route(route_name, merged, args, kwargs, task, fallback_name=name)
        return self.router.route(name, merged, args, kwargs, task)

    def build_message(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        task: Task | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> tuple[TaskMessage, Route]:
        """The message and route ``send_task`` would publish (validated).

        ``route_name``: route the message as if it were this task (Celery's
        ``route_name``); a route for ``name`` applies only if none matches it.
        """
        self._check_options(options)
        if not isinstance(args, list | tuple):
            raise TypeError(f"{name}: task args must be a list or tuple, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"{name}: task kwargs must be a mapping, got {type(kwargs).__name__}")
        eta, expires = self._times(options, task)
        parent = current_request()
        serializer = (
            options.get("serializer") or (task.serializer if task else None) or self.conf.task_serializer
        )
        _optional_int("priority", options.get("priority"), 0, 255)
        route = self._route(name, args, kwargs, options, task, route_name)
        _optional_int("priority", route.priority, 0, 255)
        task_id = task_id or str(uuid.uuid4())
        ignore = options.get("ignore_result")
        message = TaskMessage(
            id=task_id,
            task=name,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            retries=_optional_int("retries", options.get("retries"), 0) or 0,
            eta=eta,
            expires=expires,
            time_limit=_optional_seconds("time_limit", options.get("time_limit")),
            soft_time_limit=_optional_seconds("soft_time_limit", options.get("soft_time_limit")),
            root_id=options.get("root_id")
            or (parent.root_id if parent and not parent.called_directly else None)
            or task_id,
            parent_id=options.get("parent_id")
            or (parent.id if parent and not parent.called_directly else None),
            shadow=options.get("shadow"),
            origin=self.origin,
            ignore_result=bool(ignore) if ignore is not None else bool(task and task.ignore_result),
            reply_to=options.get("reply_to") or "",
            priority=route.priority,
            delivery_mode=route.delivery_mode,
            content_type=serializers.content_type_of(serializer),
            extra_headers=dict(options.get("headers") or {}),
        )
        return message, route

    def _envelope(self, message: TaskMessage) -> Envelope:
        envelope = encode(message)
        limit = self.conf.task_message_max_bytes
        if envelope.size > limit:
            raise MessageTooLargeError(
                f"message for {message.task}[{message.id}] is {envelope.size} bytes, over "
                f"task_message_max_bytes={limit}: pass a reference (a path, a key) instead of the data"
            )
        return envelope

    def _outgoing(self, message: TaskMessage, route: Route) -> Outgoing:
        queue = route.queue
        if queue.name not in self._declared:
            self.broker.declare_queue(queue)
            self._declared.add(queue.name)
        return Outgoing(
            queue.name, self._envelope(message), route.persistent, message.eta_timestamp, route.priority or 0
        )

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        task: Task | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send a task by name (it need not be registered here) and return its result handle."""
        message, route = self.build_message(name, args or (), kwargs, task_id, task, route_name, **options)
        self.broker.publish([self._outgoing(message, route)])
        return AsyncResult(message.id, self.backend, name)

    def send_many(
        self,
        name: str,
        calls: Iterable[Sequence[Any]],
        task: Task | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> list[AsyncResult]:
        """Send one task per argument tuple, in one broker round trip."""
        batch = [self.build_message(name, args, None, None, task, route_name, **options) for args in calls]
        self.publish_batch(batch)
        return [AsyncResult(message.id, self.backend, name) for message, _ in batch]

    def publish_batch(self, batch: Iterable[tuple[TaskMessage, Route]]) -> None:
        """Publish messages made by :meth:`build_message`, in one broker round trip."""
        self.broker.publish([self._outgoing(message, route) for message, route in batch])

    def send_retry(
        self,
        request: Request,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        eta: datetime | None = None,
        countdown: float | None = None,
        **options: Any,
    ) -> None:
        """Send ``request``'s task again with its retry count raised (used by ``Task.retry``)."""
        self._check_options(options)
        original = request.message
        if original is None:
            raise RuntimeError("retry needs the original message; it is only possible inside a worker")
        when, _ = self._times({"countdown": countdown, "eta": eta}, None)
        message = original.with_changes(
            retries=request.retries + 1,
            eta=when,
            args=tuple(args) if args is not None else original.args,
            kwargs=dict(kwargs) if kwargs is not None else original.kwargs,
        )
        queue_name = (
            options.get("queue") or request.delivery_info.get("queue") or self.conf.task_default_queue
        )
        queue = self.router.queue(queue_name)
        route = Route(queue, message.delivery_mode, message.priority)
        self.broker.publish([self._outgoing(message, route)])

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:
        """A handle on the result of ``task_id``."""
        return AsyncResult(task_id, self.backend, task_name)

    def queues_for(self, names: Sequence[str] | None) -> list[Queue]:
        """The queues a worker consumes: ``names`` (declared or created), or every declared queue."""
        if not names:
            return list(self.router.queues.values())
        return [self.router.queue(name) for name in names]

    def close(self) -> None:
        """Close broker and backend connections opened by this process."""
        if "broker" in self.__dict__:
            self.broker.close()
        if "backend" in self.__dict__ and self.backend is not None:
            self.backend.close()


Celery = Celeriac
