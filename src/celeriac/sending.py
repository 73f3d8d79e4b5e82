"""The producer: every message celeriac sends leaves through here.

``apply_async``, ``send_task``, ``apply_many``, ``Task.chunks``, the canvas (a group's
members, a chain's first step, the callbacks and next chain step a worker sends), a retry,
and a message re-published because it arrived before its ETA all take one path:

1. **check** — the options are known (Celery's names; a Celery option celeriac
   does not implement is an error that says what to do instead), the arguments
   are a list/tuple and a mapping;
2. **times** — ``countdown``/``eta`` and ``expires`` become aware datetimes;
3. **route** — queue, delivery mode and priority (:mod:`celeriac.routing`);
4. **build** — a :class:`~celeriac.protocol.message.TaskMessage`; ``link``,
   ``link_error`` and ``chain`` go into the body's embed as Celery's protocol 2 lays
   them out (``callbacks``, ``errbacks``, ``chain``: lists of signature dicts), and
   ``group_id``/``group_index`` into the ``group``/``group_index`` headers;
5. **envelope** — encoded, checked against ``task_message_max_bytes``;
6. **publish** — the queue declared once per producer, then one broker round
   trip per batch.

Eager mode (``task_always_eager``) runs steps 1-3 through :meth:`Producer.validate`,
so a call that would fail to send fails the same way when run here.

The producer takes the settings, a router getter and a broker getter, not the app:
it knows nothing of tasks' registry, results or hooks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from celeriac import config
from celeriac.brokers.base import Outgoing
from celeriac.context import current_request
from celeriac.errors import ConfigurationError, MessageTooLargeError
from celeriac.protocol import serializers
from celeriac.protocol.message import Envelope, TaskMessage, encode
from celeriac.routing import Route
from celeriac.signals import after_task_publish, before_task_publish

if TYPE_CHECKING:
    from celeriac.brokers.base import Broker, Delivery
    from celeriac.context import Request
    from celeriac.routing import Router
    from celeriac.task import Task

#: A message ready to publish, and where it goes.
Outbound = tuple[TaskMessage, Route]

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
        "link",
        "link_error",
        "chain",
        "chord",
        "group_id",
        "group_index",
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
    "compression": "message compression is not supported",
}

_optional_seconds = config.seconds_validator(optional=True, positive=False)
_optional_priority = config.priority_validator
_optional_retries = config.int_validator(0, "retries", optional=True)


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name}={value!r}: expected a number of seconds")
    return float(value)


def _signature_dicts(value: Any, option: str) -> list[dict[str, Any]] | None:
    """``link=``/``link_error=``/``chain=`` as the embed carries them: a list of plain
    signature dicts (one signature or a list of them is accepted), None when empty."""
    if value is None:
        return None
    items = [value] if isinstance(value, Mapping) or not isinstance(value, list | tuple) else value
    found = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("task"), str):
            raise ConfigurationError(
                f"{option}={item!r:.100}: expected a signature (task.s(...)) or a list of them"
            )
        found.append(_plain(item))
    return found or None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def embed_of(options: Mapping[str, Any]) -> dict[str, Any]:
    """The body's embed (protocol 2) for these send options: ``link`` → ``callbacks``,
    ``link_error`` → ``errbacks``, ``chain`` (the rest of a chain, last step first)."""
    return {
        "callbacks": _signature_dicts(options.get("link"), "link"),
        "errbacks": _signature_dicts(options.get("link_error"), "link_error"),
        "chain": _signature_dicts(options.get("chain"), "chain"),
        "chord": _plain(options["chord"]) if options.get("chord") else None,
    }


def _exchange_and_key(route: Route) -> tuple[str, str]:
    """The exchange and routing key a message of ``route`` goes through on RabbitMQ ("" and the
    queue name: the default exchange), as the publish signals report them."""
    queue = route.queue
    if queue.exchange.name:
        return queue.exchange.name, queue.routing_key
    return "", queue.name


class _Checked(NamedTuple):
    """What steps 1-3 found valid: the times, limits and retries of a send, and its route."""

    eta: datetime | None
    expires: datetime | None
    time_limit: float | None
    soft_time_limit: float | None
    retries: int
    route: Route


class Producer:
    """Builds, checks and publishes task messages for one app."""

    def __init__(
        self,
        conf: config.Settings,
        router: Callable[[], Router],
        broker: Callable[[], Broker],
        origin: str,
    ) -> None:
        self.conf = conf
        self._router = router
        self._broker = broker
        self.origin = origin
        #: queues declared by this producer (each is declared before its first publish)
        self._declared: set[str] = set()

    # -- 1. check -------------------------------------------------------------------------

    @staticmethod
    def check_options(options: Mapping[str, Any]) -> None:
        """Raise ConfigurationError for an option that is unknown or not implemented."""
        for key in options:
            if key in SEND_OPTIONS or key in IGNORED_OPTIONS:
                continue
            if key in UNSUPPORTED_OPTIONS:
                raise ConfigurationError(UNSUPPORTED_OPTIONS[key])
            raise ConfigurationError(
                f"apply_async option {key!r} is not known{config.did_you_mean(key, SEND_OPTIONS)}"
            )

    # -- 2. times -------------------------------------------------------------------------

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

    def eta_of(self, countdown: Any, eta: Any) -> datetime | None:
        """When a message with this ``countdown`` (seconds) or ``eta`` is due (None: now)."""
        if countdown is not None:
            return datetime.now(UTC) + timedelta(seconds=_seconds("countdown", countdown))
        if eta is not None:
            return self._aware(eta, "eta")
        return None

    def _expires(self, options: Mapping[str, Any], task: Task | None) -> datetime | None:
        expires = options.get("expires", task.expires if task is not None else None)
        if expires is None:
            return None
        if isinstance(expires, int | float | timedelta) and not isinstance(expires, bool):
            return datetime.now(UTC) + timedelta(seconds=_seconds("expires", expires))
        return self._aware(expires, "expires")

    # -- 3. route -------------------------------------------------------------------------

    def _route(
        self,
        name: str,
        args: Any,
        kwargs: Any,
        options: Mapping[str, Any],
        task: Task | None,
        route_name: str | None,
    ) -> Route:
        merged = dict(options)
        if task is not None:
            for key in ("queue", "priority", "delivery_mode"):
                if merged.get(key) is None and getattr(task, key) is not None:
                    merged[key] = getattr(task, key)
        router = self._router()
        if route_name is not None and route_name != name:
            route = router.route(route_name, merged, args, kwargs, task, fallback_name=name)
        else:
            route = router.route(name, merged, args, kwargs, task)
        _optional_priority("priority", route.priority)
        return route

    def _prepare(
        self,
        name: str,
        args: Any,
        kwargs: Any,
        task: Task | None,
        route_name: str | None,
        options: Mapping[str, Any],
    ) -> _Checked:
        """Steps 1-3: check, times, route."""
        self.check_options(options)
        if not isinstance(args, list | tuple):
            raise TypeError(f"{name}: task args must be a list or tuple, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"{name}: task kwargs must be a mapping, got {type(kwargs).__name__}")
        _optional_priority("priority", options.get("priority"))
        return _Checked(
            self.eta_of(options.get("countdown"), options.get("eta")),
            self._expires(options, task),
            _optional_seconds("time_limit", options.get("time_limit")),
            _optional_seconds("soft_time_limit", options.get("soft_time_limit")),
            _optional_retries("retries", options.get("retries")) or 0,
            self._route(name, args, kwargs, options, task, route_name),
        )

    def validate(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        task: Task | None,
        options: Mapping[str, Any],
    ) -> None:
        """Run the checks a send runs, without building a message (eager mode)."""
        self._prepare(name, args, kwargs, task, None, options)
        embed_of(options)

    # -- 4. build -------------------------------------------------------------------------

    def build(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        task: Task | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> Outbound:
        """The message and route a send of ``name`` would publish (validated).

        ``route_name``: route the message as if it were this task (Celery's
        ``route_name``); a route for ``name`` applies only if none matches it.
        """
        checked = self._prepare(name, args, kwargs, task, route_name, options)
        route = checked.route
        parent = current_request()
        if parent is not None and parent.called_directly:
            parent = None
        serializer = (
            options.get("serializer") or (task.serializer if task else None) or self.conf.task_serializer
        )
        task_id = task_id or str(uuid.uuid4())
        ignore = options.get("ignore_result")
        message = TaskMessage(
            id=task_id,
            task=name,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            retries=checked.retries,
            eta=checked.eta,
            expires=checked.expires,
            time_limit=checked.time_limit,
            soft_time_limit=checked.soft_time_limit,
            root_id=options.get("root_id") or (parent.root_id if parent else None) or task_id,
            parent_id=options.get("parent_id") or (parent.id if parent else None),
            shadow=options.get("shadow"),
            origin=self.origin,
            ignore_result=bool(ignore) if ignore is not None else bool(task and task.ignore_result),
            reply_to=options.get("reply_to") or "",
            priority=route.priority,
            delivery_mode=route.delivery_mode,
            content_type=serializers.content_type_of(serializer),
            group=options.get("group_id"),
            group_index=options.get("group_index"),
            extra_headers=dict(options.get("headers") or {}),
            embed=embed_of(options),
        )
        return message, route

    def retry(
        self,
        request: Request,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        eta: datetime | None = None,
        countdown: float | None = None,
        **options: Any,
    ) -> Outbound:
        """The next attempt of ``request``'s task: same id, retries + 1, due at ``eta``/``countdown``.

        It goes back to the queue it came from unless ``queue=`` names another.
        Only built here; the worker publishes it (see ``worker/execute.py``).
        """
        self.check_options(options)
        original = request.message
        if original is None:
            raise RuntimeError("retry needs the original message; it is only possible inside a worker")
        message = original.with_changes(
            retries=request.retries + 1,
            eta=self.eta_of(countdown, eta),
            args=tuple(args) if args is not None else original.args,
            kwargs=dict(kwargs) if kwargs is not None else original.kwargs,
        )
        queue_name = (
            options.get("queue") or request.delivery_info.get("queue") or self.conf.task_default_queue
        )
        queue = self._router().queue(queue_name)
        return message, Route(queue, message.delivery_mode, message.priority)

    # -- 5. envelope, 6. publish ----------------------------------------------------------

    def envelope(self, message: TaskMessage) -> Envelope:
        """``message`` encoded, refused if over ``task_message_max_bytes``."""
        envelope = encode(message)
        limit = self.conf.task_message_max_bytes
        if envelope.size > limit:
            raise MessageTooLargeError(
                f"message for {message.task}[{message.id}] is {envelope.size} bytes, over "
                f"task_message_max_bytes={limit}: pass a reference (a path, a key) instead of the data"
            )
        return envelope

    def _outgoing(self, broker: Broker, message: TaskMessage, route: Route) -> Outgoing:
        queue = route.queue
        if queue.name not in self._declared:
            broker.declare_queue(queue)
            self._declared.add(queue.name)
        return Outgoing(
            queue.name, self.envelope(message), route.persistent, message.eta_timestamp, route.priority or 0
        )

    def publish(self, batch: Iterable[Outbound]) -> None:
        """Publish built messages in one broker round trip.

        With receivers connected, each message is announced to ``before_task_publish``
        (which may change its ``headers`` and ``properties``: they are the ones sent) and,
        once the batch is published, to ``after_task_publish``, as Celery does.
        """
        broker = self._broker()
        if before_task_publish.receivers or after_task_publish.receivers:
            self._publish_announced(broker, list(batch))
            return
        broker.publish([self._outgoing(broker, message, route) for message, route in batch])

    def _publish_announced(self, broker: Broker, batch: list[Outbound]) -> None:
        outgoing = []
        for message, route in batch:
            item = self._outgoing(broker, message, route)
            exchange, routing_key = _exchange_and_key(route)
            before_task_publish.send(
                sender=message.task,
                body=(message.args, message.kwargs, message.embed),
                exchange=exchange,
                routing_key=routing_key,
                headers=item.envelope.headers,
                properties=item.envelope.properties,
                declare=[route.queue],
                retry_policy=None,
            )
            outgoing.append(item)
        broker.publish(outgoing)
        for (message, route), item in zip(batch, outgoing, strict=True):
            exchange, routing_key = _exchange_and_key(route)
            after_task_publish.send(
                sender=message.task,
                body=(message.args, message.kwargs, message.embed),
                headers=item.envelope.headers,
                exchange=exchange,
                routing_key=routing_key,
            )

    def send(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        task: Task | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> TaskMessage:
        """Build and publish one message; return it."""
        outbound = self.build(name, args or (), kwargs, task_id, task, route_name, **options)
        self.publish((outbound,))
        return outbound[0]

    def defer(self, delivery: Delivery, until: float) -> None:
        """Publish the received ``delivery`` again, unchanged, to be due at ``until`` (a timestamp).

        For a message that arrived before its ETA (a producer that does not
        schedule on the broker) or that must wait (a rate limit): the bytes are
        kept as they came, so a Celery producer's message stays a Celery message.
        """
        priority = delivery.envelope.properties.get("priority") or 0
        outgoing = Outgoing(delivery.queue, delivery.envelope, delivery.persistent, until, priority)
        self._broker().publish([outgoing])
