"""Declarations of the RabbitMQ broker: queues, exchanges and bindings as kombu declares
them, the conflicts RabbitMQ refuses (``PRECONDITION_FAILED``) explained, the RabbitMQ
4.3 fallback for transient queues, celeriac's own delay and dead-letter queues, and
declaring again what a returned (unroutable) message needed.

:class:`Declarations` owns what this process knows it declared; the broker holds one
and asks it where a queue's messages go.
"""

from __future__ import annotations

import logging
from typing import Any

from celeriac.brokers.amqp.connection import AdminChannel, amqp
from celeriac.brokers.amqp.wire import (
    DEAD_EXCHANGE,
    DEAD_QUEUE,
    DELAY_EXCHANGE,
    LEVEL_HEADER,
    MIN_DELAY_LEVEL,
    REGISTRY_QUEUE,
)
from celeriac.errors import ConfigurationError, QueueMismatchError, QueueNotAllowedError
from celeriac.protocol.entities import Queue

logger = logging.getLogger("celeriac.rabbitmq")


class Declarations:
    """What the RabbitMQ broker declares on its admin channel, and how it explains a refusal.

    ``transient_fallback``: declare transient queues durable from the start (their messages
    stay transient), as RabbitMQ 4.3 requires; it turns on by itself at the first refusal.
    ``transient_ttl``: seconds, the ``x-message-ttl`` of a transient queue declared durable.
    """

    def __init__(self, admin: AdminChannel, transient_fallback: bool, transient_ttl: float | None) -> None:
        self.admin = admin
        self.location = admin.connector.location
        self.transient_fallback = transient_fallback
        self.transient_ttl = transient_ttl
        #: queues declared (or found) by this process, by name
        self.declared: dict[str, Queue] = {}
        self._transient: set[str] = set()
        #: names of what this process declared on the server (queues, delay and dead-letter queues)
        self._infra: set[str] = set()
        self._warned_fallback = False

    # -- declarations -------------------------------------------------------------------------

    def declare_queue(self, queue: Queue) -> None:
        durable = queue.durable
        if not durable and not queue.exclusive and self.transient_fallback:
            durable = True
        try:
            self._declare(queue, durable)
        except QueueNotAllowedError:
            if durable:
                raise
            self._warn_fallback(queue)
            self._declare(queue, True)
            durable = True
        self.declared[queue.name] = queue
        if queue.durable:
            self._transient.discard(queue.name)
        else:
            self._transient.add(queue.name)

    def _warn_fallback(self, queue: Queue) -> None:
        self.transient_fallback = True
        if not self._warned_fallback:
            self._warned_fallback = True
            ttl = f" with a message TTL of {self.transient_ttl:g} s" if self.transient_ttl else ""
            logger.warning(
                "RabbitMQ refuses non-durable shared queues (transient_nonexcl_queues, denied by "
                "default since 4.3): transient queue %r and others are declared durable%s; their "
                "messages stay transient (delivery_mode=1, not written to disk, lost on a restart). "
                "Set broker_transport_options={'transient_queues': 'durable'} to skip the attempt.",
                queue.name,
                ttl,
            )

    def _queue_arguments(self, queue: Queue, durable: bool) -> dict[str, Any]:
        arguments = dict(queue.queue_arguments)
        if queue.max_priority is not None:
            arguments.setdefault("x-max-priority", int(queue.max_priority))
        if durable and not queue.durable and self.transient_ttl:
            arguments.setdefault("x-message-ttl", int(self.transient_ttl * 1000))
        return arguments

    def _declare(self, queue: Queue, durable: bool) -> None:
        arguments = self._queue_arguments(queue, durable)
        exchange = queue.exchange

        def declare(channel: Any) -> None:
            if exchange.name:
                channel.exchange_declare(
                    exchange.name,
                    exchange.type,
                    durable=exchange.durable,
                    auto_delete=exchange.auto_delete,
                    arguments=dict(exchange.arguments) or None,
                )
            channel.queue_declare(
                queue.name,
                durable=durable,
                exclusive=queue.exclusive,
                auto_delete=queue.auto_delete,
                arguments=arguments or None,
            )
            if exchange.name:
                channel.queue_bind(queue.name, exchange.name, routing_key=queue.routing_key)

        try:
            self.admin.call(f"declaring queue {queue.name!r}", declare)
        except QueueMismatchError as exc:
            raise ConfigurationError(self._conflict(queue, durable, arguments, exc)) from None
        if queue.name not in self._infra:
            self._infra.add(queue.name)
            self._register(queue.name)

    def _conflict(
        self, queue: Queue, durable: bool, arguments: dict[str, Any], mismatch: QueueMismatchError
    ) -> str:
        if mismatch.kind == "exchange":
            exchange = queue.exchange
            return (
                f"exchange {exchange.name!r} already exists on RabbitMQ at {self.location} with another "
                f"definition (PRECONDITION_FAILED): {mismatch.detail}. celeriac declares it "
                f"type={exchange.type!r}, "
                f"durable={exchange.durable}, auto_delete={exchange.auto_delete}. Fix: declare it as it "
                f"exists (Exchange({exchange.name!r}, type=...)), or delete it (rabbitmqctl "
                f"delete_exchange {exchange.name}) so it is made anew"
            )
        ours = (
            f"durable={durable}, exclusive={queue.exclusive}, auto_delete={queue.auto_delete}, "
            f"arguments={arguments or {}}"
        )
        theirs = (
            f"the existing queue has {mismatch.argument}={mismatch.existing!r} where celeriac declares "
            f"{mismatch.declared!r}"
            if mismatch.argument is not None
            else mismatch.detail
        )
        return (
            f"queue {queue.name!r} already exists on RabbitMQ at {self.location} with another definition "
            f"(PRECONDITION_FAILED): {theirs}. celeriac declares it with {ours}. Fix: declare the queue "
            f"as it exists (task_queues = [Queue({queue.name!r}, ...)] with the same durable and "
            f"queue_arguments), or delete it so it is made anew (rabbitmqctl delete_queue {queue.name}; "
            "its messages are lost)"
        )

    def ensure(self, queue: str) -> None:
        """Make sure a queue named only by name exists: use it as it is if it does (whoever
        declared it, however), else declare it durable, as Celery does."""
        if queue in self.declared:
            return
        if self._exists(queue):
            self.declared[queue] = Queue(queue, exchange="")
        else:
            self.declare_queue(Queue(queue))

    def _exists(self, queue: str) -> bool:
        return self.admin.call(
            f"looking up queue {queue!r}", lambda c: c.queue_declare(queue, passive=True) and True, False
        )

    def route(self, queue: str) -> tuple[str, str]:
        """The exchange and routing key that take a message to ``queue``."""
        declared = self.declared.get(queue)
        if declared is None or not declared.exchange.name:
            return "", queue
        return declared.exchange.name, declared.routing_key

    def is_transient(self, queue: str) -> bool:
        """Whether ``queue`` was declared transient: its messages are never persistent."""
        return queue in self._transient

    def _declare_infra(self, name: str, fn: Any) -> None:
        if name not in self._infra:
            self.admin.call(f"declaring {name!r}", fn)
            self._infra.add(name)

    def ensure_dead(self) -> None:
        def declare(channel: Any) -> None:
            channel.exchange_declare(DEAD_EXCHANGE, "fanout", durable=True, auto_delete=False)
            channel.queue_declare(DEAD_QUEUE, durable=True, auto_delete=False)
            channel.queue_bind(DEAD_QUEUE, DEAD_EXCHANGE, routing_key="")

        self._declare_infra(DEAD_QUEUE, declare)

    def ensure_delay(self, level: int) -> str:
        name = f"{DELAY_EXCHANGE}.{level:02d}"

        def declare(channel: Any) -> None:
            channel.exchange_declare(DELAY_EXCHANGE, "headers", durable=True, auto_delete=False)
            channel.queue_declare(
                name,
                durable=True,
                auto_delete=False,
                arguments={"x-message-ttl": 2**level, "x-dead-letter-exchange": ""},
            )
            channel.queue_bind(name, DELAY_EXCHANGE, arguments={"x-match": "all", LEVEL_HEADER: level})

        self._declare_infra(name, declare)
        return name

    def _register(self, queue: str) -> None:
        """Note the queue in ``celeriac.queues`` (AMQP cannot list queues)."""

        def register(channel: Any) -> None:
            if REGISTRY_QUEUE not in self._infra:
                channel.queue_declare(REGISTRY_QUEUE, durable=True, auto_delete=False)
                self._infra.add(REGISTRY_QUEUE)
            channel.basic_publish(amqp.Message(queue.encode(), delivery_mode=2), "", REGISTRY_QUEUE)

        self.admin.call("registering a queue name", register)

    def queue_of(self, exchange: str, key: str, message: Any) -> str:
        """The queue a message published to ``exchange`` with ``key`` was meant for."""
        if exchange in ("", DELAY_EXCHANGE):
            return key
        if exchange == DEAD_EXCHANGE:
            return DEAD_QUEUE
        for queue in self.declared.values():
            if queue.exchange.name == exchange and queue.routing_key == key:
                return queue.name
        return key

    def redeclare(self, exchange: str, key: str, message: Any) -> None:
        """Forget that this process declared what a returned message needed; declare it again."""
        if exchange == DELAY_EXCHANGE:
            level = int((message.headers or {}).get(LEVEL_HEADER, MIN_DELAY_LEVEL))
            self._infra.discard(f"{DELAY_EXCHANGE}.{level:02d}")
            self.ensure_delay(level)
            return
        if exchange == DEAD_EXCHANGE:
            self._infra.discard(DEAD_QUEUE)
            self.ensure_dead()
            return
        name = self.queue_of(exchange, key, message)
        declared = self.declared.pop(name, None)
        self._infra.discard(name)
        if declared is not None:
            self.declare_queue(declared)
        else:
            self.ensure(name)
