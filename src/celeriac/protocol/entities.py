"""``Queue`` and ``Exchange``: queue declarations with kombu's constructor arguments.

A Celery configuration such as::

    task_queues = (
        Queue('celery', routing_key='celery'),
        Queue('transient', Exchange('transient', delivery_mode=1),
              routing_key='transient', durable=False),
    )

works unchanged with ``from celeriac import Queue, Exchange``.

What each broker makes of a declaration:

* ``durable=False`` or an exchange with ``delivery_mode=1`` makes the queue's
  messages transient: faster, and lost when the broker restarts (for the
  embedded SQLite broker: when the machine reboots).
* ``exchange``, ``routing_key`` and exchange ``type`` matter on RabbitMQ. On
  SQLite and Redis a message goes to the queue it is routed to by name, and a
  routing key alone selects the declared queue bound with that key.
* ``queue_arguments`` are passed to RabbitMQ (``x-queue-type``,
  ``x-max-priority``, ...) and kept, unused, elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celeriac.errors import ConfigurationError
from celeriac.protocol.message import PERSISTENT, TRANSIENT

_EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")


def delivery_mode_of(value: Any, where: str = "delivery_mode") -> int | None:
    """Normalise ``1``/``2``/``'transient'``/``'persistent'`` to 1 or 2 (None stays None)."""
    if value is None:
        return None
    if value in (TRANSIENT, "transient"):
        return TRANSIENT
    if value in (PERSISTENT, "persistent"):
        return PERSISTENT
    raise ConfigurationError(
        f"{where}={value!r} is not a delivery mode: use 'persistent' (2) or 'transient' (1)"
    )


@dataclass(frozen=True, slots=True, init=False)
class Exchange:
    """An exchange, with kombu's arguments. Only RabbitMQ routes through exchanges."""

    name: str
    type: str
    durable: bool
    auto_delete: bool
    delivery_mode: int | None
    arguments: Mapping[str, Any]

    def __init__(
        self,
        name: str = "",
        type: str = "direct",
        durable: bool = True,
        auto_delete: bool = False,
        delivery_mode: int | str | None = None,
        arguments: Mapping[str, Any] | None = None,
        **_ignored: Any,
    ) -> None:
        if not isinstance(name, str):
            raise ConfigurationError(f"Exchange name must be a string, got {name!r}")
        if type not in _EXCHANGE_TYPES:
            raise ConfigurationError(
                f"Exchange({name!r}) type={type!r} is not one of {', '.join(_EXCHANGE_TYPES)}"
            )
        mode = delivery_mode_of(delivery_mode, f"Exchange({name!r}).delivery_mode")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "durable", bool(durable))
        object.__setattr__(self, "auto_delete", bool(auto_delete))
        object.__setattr__(self, "delivery_mode", mode)
        object.__setattr__(self, "arguments", dict(arguments or {}))


@dataclass(frozen=True, slots=True, init=False)
class Queue:
    """A named queue, with kombu's arguments."""

    name: str
    exchange: Exchange
    routing_key: str
    durable: bool
    exclusive: bool
    auto_delete: bool
    queue_arguments: Mapping[str, Any]
    max_priority: int | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        name: str = "",
        exchange: Exchange | str | None = None,
        routing_key: str = "",
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        queue_arguments: Mapping[str, Any] | None = None,
        max_priority: int | None = None,
        **extra: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a Queue needs a non-empty name, got {name!r}")
        if isinstance(exchange, str):
            exchange = Exchange(exchange)
        elif exchange is None:
            exchange = Exchange(name)
        elif not isinstance(exchange, Exchange):
            raise ConfigurationError(f"Queue({name!r}) exchange must be an Exchange or a name")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "exchange", exchange)
        object.__setattr__(self, "routing_key", routing_key or name)
        object.__setattr__(self, "durable", bool(durable))
        object.__setattr__(self, "exclusive", bool(exclusive))
        object.__setattr__(self, "auto_delete", bool(auto_delete))
        object.__setattr__(self, "queue_arguments", dict(queue_arguments or {}))
        object.__setattr__(self, "max_priority", max_priority)
        object.__setattr__(self, "extra", dict(extra))

    def default_delivery_mode(self) -> int:
        """The delivery mode of a message sent here without an explicit one."""
        if self.exchange.delivery_mode is not None:
            return self.exchange.delivery_mode
        return TRANSIENT if not self.durable else PERSISTENT
