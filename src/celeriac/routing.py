"""Routing: which queue a task message goes to, and whether it is persistent.

Precedence, as in Celery:

1. options given to ``apply_async`` / ``send_task`` (and the task's own
   ``queue=``, ``priority=`` options);
2. the first router in ``task_routes`` that returns a route for the task's
   name; a message sent with a ``route_name`` (the ``celery.starmap`` message
   of ``Task.chunks``) is routed as that name, and as its own name only when no
   router answers for ``route_name``;
3. ``task_default_queue``.

The delivery mode is the first of: the call's ``delivery_mode``, the route's,
the queue's exchange ``delivery_mode``, transient for a queue declared
``durable=False``, ``task_default_delivery_mode``. A message is stored
persistently only if it is persistent *and* its queue is durable.

Routers may be dicts (``{'proj.tasks.add': {'queue': 'q'}}``, keys may be globs
such as ``'proj.reports.*'``, values may be a queue name), ``(pattern, route)``
pairs, or callables ``router(name, args, kwargs, options, task=None, **kw)``
returning a route dict, a queue name or None.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from celeriac.errors import ConfigurationError
from celeriac.protocol.entities import Queue, delivery_mode_of
from celeriac.protocol.message import PERSISTENT, TRANSIENT

_ROUTE_KEYS = frozenset({"queue", "routing_key", "exchange", "delivery_mode", "priority"})


@dataclass(frozen=True, slots=True)
class Route:
    """Where one message goes."""

    queue: Queue
    delivery_mode: int
    priority: int | None

    @property
    def persistent(self) -> bool:
        """Stored so that it survives a broker restart."""
        return self.delivery_mode == PERSISTENT and self.queue.durable


def _glob_router(routes: Mapping[str, Any]) -> Callable[..., Any]:
    exact = {k: v for k, v in routes.items() if isinstance(k, str) and not any(c in k for c in "*?[")}
    patterns = [
        (re.compile(fnmatch.translate(k)) if isinstance(k, str) else k, v)
        for k, v in routes.items()
        if k not in exact
    ]

    def route(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in exact:
            return exact[name]
        for pattern, value in patterns:
            if pattern.match(name):
                return value
        return None

    return route


def _as_router(entry: Any) -> Callable[..., Any]:
    if isinstance(entry, Mapping):
        return _glob_router(entry)
    if isinstance(entry, tuple):
        return _glob_router({entry[0]: entry[1]})
    return entry


class Router:
    """Resolves routes against the declared queues."""

    def __init__(
        self,
        queues: tuple[Queue, ...] | None,
        routes: tuple[Any, ...] | None,
        default_queue: str,
        default_delivery_mode: int,
        default_priority: int | None,
        create_missing: bool,
        max_priority: int | None = None,
    ) -> None:
        self.max_priority = max_priority
        declared = queues or (Queue(default_queue),)
        self.queues: dict[str, Queue] = {q.name: self._with_max_priority(q) for q in declared}
        self.default_queue = default_queue
        self.default_delivery_mode = default_delivery_mode
        self.default_priority = default_priority
        self.create_missing = create_missing
        self.routers = tuple(_as_router(entry) for entry in routes or ())
        # dict and (pattern, route) routers give the same answer for the same name
        self._static = all(isinstance(entry, Mapping | tuple) for entry in routes or ())
        self._cache: dict[tuple[str, str | None], Route] = {}

    def queue(self, name: str) -> Queue:
        """The declared queue ``name``, created durable if missing queues are allowed."""
        queue = self.queues.get(name)
        if queue is not None:
            return queue
        if not self.create_missing:
            raise ConfigurationError(
                f"queue {name!r} is not in task_queues ({', '.join(self.queues)}): declare it "
                "or set task_create_missing_queues=True"
            )
        queue = self.queues[name] = self._with_max_priority(Queue(name))
        return queue

    def _with_max_priority(self, queue: Queue) -> Queue:
        """``task_queue_max_priority`` for a queue that sets none of its own (as Celery does)."""
        if (
            self.max_priority is None
            or queue.max_priority is not None
            or "x-max-priority" in queue.queue_arguments
        ):
            return queue
        return Queue(
            queue.name,
            queue.exchange,
            queue.routing_key,
            queue.durable,
            queue.exclusive,
            queue.auto_delete,
            queue.queue_arguments,
            max_priority=self.max_priority,
            **queue.extra,
        )

    def _by_routing_key(self, routing_key: str, exchange: Any) -> Queue:
        exchange_name = getattr(exchange, "name", exchange)
        for queue in self.queues.values():
            if queue.routing_key == routing_key and (exchange_name in (None, queue.exchange.name)):
                return queue
        bound = ", ".join(f"{q.name} ({q.routing_key})" for q in self.queues.values())
        raise ConfigurationError(
            f"routing_key {routing_key!r} matches no declared queue (queues and their keys: {bound}): "
            "declare the queue in task_queues or route with queue="
        )

    def _from_routers(
        self, name: str, args: Any, kwargs: Any, options: Mapping[str, Any], task: Any
    ) -> dict[str, Any]:
        for router in self.routers:
            found = router(name, args, kwargs, options, task=task)
            if found is None:
                continue
            if isinstance(found, str):
                return {"queue": found}
            if isinstance(found, Queue):
                return {"queue": found.name}
            if not isinstance(found, Mapping):
                raise ConfigurationError(
                    f"router {router!r} returned {found!r} for {name}: expected a dict, a queue name or None"
                )
            unknown = set(found) - _ROUTE_KEYS
            if unknown:
                raise ConfigurationError(
                    f"route for {name} has unknown key(s) {sorted(unknown)}; allowed: {sorted(_ROUTE_KEYS)}"
                )
            return dict(found)
        return {}

    def route(
        self,
        name: str,
        options: Mapping[str, Any],
        args: Any = (),
        kwargs: Any = None,
        task: Any = None,
        fallback_name: str | None = None,
    ) -> Route:
        """Resolve the route of one message (cached when only static routes apply).

        ``fallback_name``: the name to look up in ``task_routes`` when no router
        answers for ``name``.
        """
        explicit = {k: v for k, v in options.items() if k in _ROUTE_KEYS and v is not None}
        key = (name, fallback_name)
        if not explicit and self._static and key in self._cache:
            return self._cache[key]
        found = self._from_routers(name, args, kwargs or {}, options, task)
        if not found and fallback_name is not None:
            found = self._from_routers(fallback_name, args, kwargs or {}, options, task)
        merged = {**found, **explicit}
        queue_opt = merged.get("queue")
        if isinstance(queue_opt, Queue):
            self.queues.setdefault(queue_opt.name, queue_opt)
            queue = self.queues[queue_opt.name]
        elif queue_opt:
            queue = self.queue(queue_opt)
        elif merged.get("routing_key"):
            queue = self._by_routing_key(merged["routing_key"], merged.get("exchange"))
        else:
            queue = self.queue(self.default_queue)
        mode = delivery_mode_of(merged.get("delivery_mode"), f"delivery_mode for {name}")
        if mode is None:
            mode = queue.exchange.delivery_mode or (
                TRANSIENT if not queue.durable else self.default_delivery_mode
            )
        priority = merged.get("priority", self.default_priority)
        route = Route(queue, mode, priority)
        if not explicit and self._static:
            self._cache[key] = route
        return route
