"""The RabbitMQ broker: ``amqp://``, ``amqps://`` (and Celery's ``pyamqp://``).

Layout, as Celery lays it out
-----------------------------
A ``Queue('celery')`` is a durable queue ``celery`` bound to a durable direct
exchange ``celery`` with the routing key ``celery``; ``Exchange(type=...)``,
``durable``, ``auto_delete``, ``exclusive``, ``queue_arguments`` and
``max_priority`` (``x-max-priority``) are declared as kombu declares them, so a
stock Celery producer feeds celeriac workers and the reverse. A message is the
protocol-v2 body with its headers and properties as AMQP content (no JSON
wrapper, unlike Redis). A declaration that conflicts with an existing queue
(``PRECONDITION_FAILED``) fails with both definitions and the fix.

What RabbitMQ does natively, and what celeriac adds
---------------------------------------------------
* **Delivery**: each consumer (a worker's child) has its own connection and
  channel; ``basic.qos`` is the child's prefetch window. Unacked messages of a
  child that dies return to the queue because its connection closes: RabbitMQ's
  own guarantee, so there are no leases to renew (``extend_leases`` does
  nothing) and another process cannot settle a dead consumer's messages.
* **Early ack** (``mark_started``) is ``basic.ack`` just before the task runs
  (Celery's behaviour); a delivery whose connection was lost is reported lost
  instead (RabbitMQ has put it back), so it is dropped unrun; late acks are sent after the window, with
  ``multiple=True`` when every earlier delivery is settled too.
* **Publisher confirms**: a batch of persistent messages is published, then one
  wait covers the whole batch, so a returned ``apply_async`` means RabbitMQ has
  the message. A batch of only transient messages is not waited for.
* **Handing back** (``hand_back``, a child's prefetched messages on a warm
  stop, from its hand-back thread while its task runs): the consumer's subscriptions are
  cancelled first, or RabbitMQ would push the copies straight back into its free window;
  its next fetch subscribes again. Everything that uses a consumer's channel holds that
  consumer's lock; the copies go out on a pooled channel of their own.
* **Delivery counting** (``task_delivery_limit``): AMQP only says *redelivered*.
  A redelivered message (its consumer died or lost its connection) is published
  again with the count in the ``x-celeriac-deliveries`` header (confirmed), then
  acked; at the limit it goes to the dead letters. A message its task requeued
  (``reject(requeue=True)``, Celery's ``Reject(requeue=True)``) is published again
  with this delivery counted, so its next delivery is a redelivery; a hand-back
  (``hand_back``) is published again with the count unchanged. All three put the
  message at the back of its queue (a native ``basic.reject`` would keep its place,
  but its *redelivered* flag would not tell a requeue from a consumer that died).
* **ETA / countdown** without a plugin or worker memory: a message due in
  ``d`` ms waits in ``celeriac.delay.<k>``, a durable queue whose messages expire
  after 2**k ms (k = floor(log2 d)) and are dead-lettered back to their queue
  through the default exchange (their routing key is the queue name). A
  message that comes back early is scheduled again for the rest by the worker,
  so a delay takes at most ~log2(d) hops. Its count is in ``celeriac.delay.*``,
  not in the target queue's ``scheduled``.
* **Dead letters**: the fanout exchange ``celeriac.dead`` feeds the durable
  queue ``celeriac.dead``; each letter carries the reason, queue, time and
  delivery count in ``x-celeriac-*`` headers.
* **Transient queues**: ``durable=False`` queues and ``delivery_mode=1``
  messages, no confirms. RabbitMQ 4.3 refuses non-durable, non-exclusive queues
  by default (deprecated feature ``transient_nonexcl_queues``); then the queue is
  declared durable and its messages stay transient (not written to disk; lost on
  a restart), optionally with a message TTL, and one warning says so.
* **Queue length**: a passive declare gives *ready* messages; AMQP does not
  report unacked ones to clients, so ``reserved`` counts only this process's
  consumers (the monitor sums what workers report).

Modules
-------
This module delivers and settles (publish, fetch, ack, reject, consumers);
:mod:`~celeriac.brokers.amqp.wire` has the message format and celeriac's headers,
:mod:`~celeriac.brokers.amqp.declarations` the declarations and their conflicts,
:mod:`~celeriac.brokers.amqp.sidequeues` the dead letters, heartbeats and queue registry,
:mod:`~celeriac.brokers.amqp.connection` the connections, the admin channel, the
producer channel pool and the translation of py-amqp errors. :class:`AMQPBroker` holds
one :class:`~celeriac.brokers.amqp.declarations.Declarations` and one
:class:`~celeriac.brokers.amqp.sidequeues.SideQueues`, each owning its own state.

Client library, by measurement
------------------------------
py-amqp (Celery's own client) over pika: ``benchmarks/amqp_clients.py`` on the
same RabbitMQ 3.10 (2-core VM, 10,000 messages, median of 3) measured
py-amqp 16.8k msg/s vs pika 17.4k for transient publishing, **14.1k vs 1.1k
(13x)** for persistent publishing under publisher confirms (py-amqp lets a batch
share one wait; pika's blocking adapter waits per message), and 15.9k vs 20.2k
(0.8x) for consuming with ``basic.qos`` 100. Confirmed publishing is what
producers do and the consumer gap is small next to task overhead; py-amqp also
puts the same frames on the wire as Celery. The asyncio clients (aio-pika,
aiormq) would need an event loop in every child for no gain in a synchronous
prefork worker.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celeriac.brokers.amqp.connection import (
    AdminChannel,
    ChannelPool,
    Connector,
    amqp_errors,
    call,
    drop,
    explain,
    on_fork,
)
from celeriac.brokers.amqp.declarations import Declarations
from celeriac.brokers.amqp.sidequeues import SideQueues
from celeriac.brokers.amqp.wire import (
    COUNT_HEADER,
    DEAD_EXCHANGE,
    DELAY_EXCHANGE,
    ETA_EARLY_S,
    ETA_HEADER,
    LEVEL_HEADER,
    Plan,
    counted,
    delay_level,
    from_message,
    is_persistent,
    priority_of,
    to_message,
    until,
)
from celeriac.brokers.base import (
    Broker,
    BrokerOptions,
    DeadLetter,
    Delivery,
    NodeStats,
    Outgoing,
    PoolStats,
    QueueLength,
    publish_with_retry,
)
from celeriac.errors import BrokerError, ConfigurationError
from celeriac.protocol.entities import Queue
from celeriac.protocol.message import Envelope

logger = logging.getLogger("celeriac.rabbitmq")

#: Unread confirms a channel publishing only transient messages lets pile up.
CONFIRM_LAG = 10_000
#: How long a publish waits for the broker's confirms before failing.
CONFIRM_TIMEOUT_S = 30.0

#: kombu/Celery transport options that have no effect here, each with why and what does the job:
#: accepted so a Celery configuration loads, and named in a warning so none is ignored silently.
_DEAD_PEER = "a dead connection is found by the AMQP heartbeat (option 'heartbeat') and TCP keepalive"
_IGNORED_OPTIONS = {
    "max_retries": "a publish is not retried by the transport; broker_connection_max_retries bounds a "
    "worker's reconnection attempts",
    "interval_start": "reconnection pacing is celeriac's own (broker_connection_retry)",
    "interval_step": "reconnection pacing is celeriac's own (broker_connection_retry)",
    "interval_max": "reconnection pacing is celeriac's own (broker_connection_retry)",
    "confirm_publish": "every publish is confirmed by RabbitMQ before it returns",
    "client_properties": "celeriac names its connections itself (product 'celeriac', pid)",
    "login_method": "the login uses the URL's user and password",
    "read_timeout": _DEAD_PEER,
    "write_timeout": _DEAD_PEER,
    "socket_settings": "sockets use TCP keepalive; broker_connection_timeout bounds connecting",
}
_ACCEPTED_OPTIONS = frozenset(
    {
        "transient_queues",  # 'auto' (default), 'durable' (always the RabbitMQ 4.3 fallback)
        "transient_message_ttl",  # seconds; x-message-ttl of a transient queue declared durable
        "confirm_timeout",
        "heartbeat",
        *_IGNORED_OPTIONS,
    }
)


@dataclass(eq=False)
class _Consumer:
    """One consumer's connection and channel, and what it holds.

    Everything that uses the channel holds ``lock``: a py-amqp channel is not thread-safe,
    and a worker's child hands its prefetched messages back from a second thread while
    the main thread may be fetching or settling."""

    name: str
    gen: int
    connection: Any
    channel: Any
    qos: int = 0
    queues: tuple[str, ...] = ()
    buffer: deque[tuple[str, Any]] = field(default_factory=deque)
    unacked: set[int] = field(default_factory=set)  # delivered to us, not yet acked
    started: set[int] = field(default_factory=set)  # acked early (mark_started)
    by_tag: dict[int, tuple[str, Any]] = field(default_factory=dict)  # handed out by fetch
    lock: threading.RLock = field(default_factory=threading.RLock)


class AMQPBroker(Broker):
    """Queues in RabbitMQ, laid out as Celery lays them out.

    What it declared is owned by :attr:`declarations`, the dead letters, heartbeats and
    queue registry by :attr:`side_queues`; both work through :attr:`admin`, this
    process's channel for declarations and passive reads.
    """

    scheme = "amqp"
    requeues_dead_consumers = True

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        super().__init__(url, options)
        transport = self.transport_options(_ACCEPTED_OPTIONS, "RabbitMQ")
        for name in sorted(set(transport) & _IGNORED_OPTIONS.keys()):
            logger.warning(
                "broker_transport_options %s=%r has no effect on celeriac's RabbitMQ broker: %s; "
                "remove it to silence this warning",
                name,
                transport[name],
                _IGNORED_OPTIONS[name],
            )
        mode = transport.get("transient_queues", "auto")
        if mode not in ("auto", "durable"):
            raise ConfigurationError(
                f"broker_transport_options transient_queues={mode!r}: use 'auto' (declare transient "
                "queues non-durable where RabbitMQ allows it) or 'durable' (always durable queues "
                "holding transient messages, as RabbitMQ 4.3 requires)"
            )
        transient_ttl = self._seconds(transport, "transient_message_ttl", None)
        self.confirm_timeout = (
            self._seconds(transport, "confirm_timeout", CONFIRM_TIMEOUT_S) or CONFIRM_TIMEOUT_S
        )
        heartbeat = self._seconds(transport, "heartbeat", 0) or 0
        self.connector = Connector(url, "broker_url", self.options.connect_timeout, heartbeat)
        self.pool = ChannelPool(self.connector, self.options.pool_limit, self.options.pool_timeout)
        self.admin = AdminChannel(self.connector)
        self.declarations = Declarations(self.admin, mode == "durable", transient_ttl)
        self.side_queues = SideQueues(self.connector, self.admin, self.declarations, self._send, self.now)
        self._reset_process_state()
        on_fork(self, "_reset_process_state")

    @staticmethod
    def _seconds(transport: dict[str, Any], name: str, default: float | None) -> float | None:
        value = transport.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigurationError(
                f"broker_transport_options {name}={value!r}: expected a number of seconds >= 0"
            )
        return float(value)

    def _reset_process_state(self) -> None:
        """Forget consumer connections (a forked child must not use its parent's sockets)."""
        self._consumers: dict[str, _Consumer] = {}
        self._by_gen: dict[int, _Consumer] = {}
        self._gen = 0
        #: poison messages this process's fetches dead-lettered, until fetched_dead_letters()
        self._fetch_dead: list[DeadLetter] = []

    @property
    def location(self) -> str:
        return self.connector.location

    @property
    def transient_fallback(self) -> bool:
        """Whether transient queues are declared durable (asked for, or RabbitMQ 4.3+ refused)."""
        return self.declarations.transient_fallback

    def declare_queue(self, queue: Queue) -> None:
        self.declarations.declare_queue(queue)

    def pool_stats(self) -> PoolStats:
        """How this process's producer channel pool is used."""
        return self.pool.stats()

    # -- producer side ------------------------------------------------------------------------

    def _publish(self, batch: Sequence[Outgoing]) -> None:
        now = self.now()
        plan: list[Plan] = []
        for item in batch:
            self.declarations.ensure(item.queue)
            persistent = item.persistent and not self.declarations.is_transient(item.queue)
            if item.eta is not None and item.eta - now > ETA_EARLY_S:
                level = delay_level(item.eta - now)
                self.declarations.ensure_delay(level)
                message = to_message(
                    item.envelope, persistent, item.priority, {LEVEL_HEADER: level, ETA_HEADER: item.eta}
                )
                plan.append((message, DELAY_EXCHANGE, item.queue, persistent))
            else:
                exchange, routing_key = self.declarations.route(item.queue)
                plan.append(
                    (to_message(item.envelope, persistent, item.priority), exchange, routing_key, persistent)
                )
        self._send(plan, f"publishing {len(batch)} message(s)")

    def _send(self, plan: Sequence[Plan], what: str, again: bool = True) -> None:
        """Publish on a pooled confirm channel; wait once for the persistent ones. A message
        no queue took (its queue was deleted after this process declared it) comes back:
        the queue is declared again and the message sent again, once."""
        returned: list[tuple[str, str, Any]] = []

        def send() -> None:
            with self.pool.channel() as pooled:
                last = 0
                for message, exchange, routing_key, persistent in plan:
                    seq = pooled.publish(message, exchange, routing_key)
                    if persistent:
                        last = seq
                if last:
                    pooled.wait(last, self.confirm_timeout)
                elif pooled.seq - pooled.confirmed > CONFIRM_LAG:
                    # transient only: read the confirms now and then so they never pile up
                    pooled.wait(pooled.seq - CONFIRM_LAG // 2, self.confirm_timeout)
                returned.extend(pooled.returned)
                pooled.returned.clear()

        publish_with_retry(self.options, what, lambda: call(what, self.location, send))
        if returned:
            self._unroutable(returned, what, again)

    def _unroutable(self, returned: list[tuple[str, str, Any]], what: str, again: bool) -> None:
        """Declare again what returned messages needed (their queue was deleted after this
        process declared it) and send them again, once."""
        queues = sorted({self.declarations.queue_of(ex, key, message) for ex, key, message in returned})
        if not again:
            raise BrokerError(
                f"RabbitMQ at {self.location} routed {len(returned)} message(s) to no queue ({what}; "
                f"for {', '.join(map(repr, queues))}), even after declaring again: check the "
                "exchange's bindings"
            )
        logger.warning(
            "%d message(s) for %s came back unrouted (the queue was deleted?): declaring again and "
            "sending them again",
            len(returned),
            ", ".join(map(repr, queues)),
        )
        for exchange, key, message in returned:
            self.declarations.redeclare(exchange, key, message)
        plan = [(message, exchange, key, is_persistent(message)) for exchange, key, message in returned]
        self._send(plan, what, again=False)

    # -- consumer side ------------------------------------------------------------------------

    def _consumer(self, name: str, queues: Sequence[str], n: int, consume: bool) -> _Consumer:
        """The consumer ``name``; with ``consume``, subscribed to ``queues`` with a window of ``n``."""
        consumer = self._consumers.get(name)
        if consumer is None:
            for queue in queues:
                self.declarations.ensure(queue)
            connection = self.connector.connect(f"opening consumer {name}")
            try:
                channel = self.connector.channel(connection)
            except Exception as exc:
                drop(connection)
                raise explain(exc, "opening a consumer channel", self.location) from exc
            self._gen += 1
            consumer = _Consumer(name, self._gen, connection, channel)
            self._consumers[name] = consumer
            self._by_gen[consumer.gen] = consumer
        if not consume:
            return consumer
        with consumer.lock:
            self._subscribe(consumer, queues, n)
        return consumer

    def _subscribe(self, consumer: _Consumer, queues: Sequence[str], n: int) -> None:
        """Set the window and consume from exactly ``queues``."""
        name = consumer.name
        if consumer.qos != n:
            consumer.channel.basic_qos(0, n, False)
            consumer.qos = n
        wanted = tuple(queues)
        if consumer.queues != wanted:
            for queue in wanted:
                if queue in consumer.queues:
                    continue
                self.declarations.ensure(queue)

                def on_message(message: Any, queue: str = queue, consumer: _Consumer = consumer) -> None:
                    consumer.buffer.append((queue, message))
                    consumer.unacked.add(message.delivery_tag)

                consumer.channel.basic_consume(queue, consumer_tag=f"{name}:{queue}", callback=on_message)
            for queue in consumer.queues:
                if queue not in wanted:
                    consumer.channel.basic_cancel(f"{name}:{queue}")
            consumer.queues = wanted

    def _lose(self, consumer: _Consumer) -> None:
        """Forget a consumer whose connection failed or that is let go; RabbitMQ requeues
        whatever it held."""
        self._consumers.pop(consumer.name, None)
        self._by_gen.pop(consumer.gen, None)
        drop(consumer.connection)

    def _fetch(
        self, queues: Sequence[str], n: int, timeout: float, consumer: str, ack: Sequence[Delivery]
    ) -> list[Delivery]:
        if ack:
            self._ack(ack)
        state: _Consumer | None = None
        try:
            state = self._consumer(consumer, queues, n, consume=timeout > 0)
            with state.lock:
                if timeout > 0:
                    return self._take(state, n, timeout)
                return self._poll(state, queues, n)
        except BrokerError:
            if state is not None:
                self._lose(state)
            raise
        except Exception as exc:
            if state is not None:
                self._lose(state)
            if amqp_errors is not None and isinstance(exc, amqp_errors.AMQPError | OSError):
                raise explain(exc, f"consuming from {', '.join(queues)}", self.location) from exc
            raise

    def _take(self, consumer: _Consumer, n: int, timeout: float) -> list[Delivery]:
        """Wait up to ``timeout`` for a pushed delivery, then take what else is on the socket."""
        deadline = time.monotonic() + timeout
        out: list[Delivery] = []
        while len(out) < n:
            if not consumer.buffer:
                if self._readable(consumer):  # the rest of a burst already on the socket
                    self._drain(consumer, None)
                    continue
                left = deadline - time.monotonic()
                if out or left <= 0:
                    break
                self._drain(consumer, min(left, 1.0))
                continue
            queue, message = consumer.buffer.popleft()
            delivery = self._deliver(consumer, queue, message)
            if delivery is not None:
                out.append(delivery)
        return out

    def _poll(self, consumer: _Consumer, queues: Sequence[str], n: int) -> list[Delivery]:
        """A fetch that must not wait: what was pushed already, then ``basic.get`` (which
        answers at once, message or empty) for the rest."""
        out = self._take(consumer, n, 0.0) if consumer.queues else []
        for queue in queues:
            while len(out) < n:
                message = consumer.channel.basic_get(queue, no_ack=False)
                if message is None:
                    break
                consumer.unacked.add(message.delivery_tag)
                delivery = self._deliver(consumer, queue, message)
                if delivery is not None:
                    out.append(delivery)
        return out

    @staticmethod
    def _readable(consumer: _Consumer) -> bool:
        """Whether a frame (or part of one) waits to be read, without blocking."""
        transport = consumer.connection.transport
        if getattr(transport, "_read_buffer", None):
            return True
        sock = transport.sock
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True
        return bool(select.select([sock], [], [], 0)[0])

    @staticmethod
    def _drain(consumer: _Consumer, timeout: float | None) -> None:
        """Read one frame, waiting up to ``timeout`` (None: data is known to be there;
        py-amqp then skips two socket-timeout system calls)."""
        with contextlib.suppress(TimeoutError):
            consumer.connection.drain_events(timeout=timeout)

    def _deliver(self, consumer: _Consumer, queue: str, message: Any) -> Delivery | None:
        tag = message.delivery_tag
        envelope, wire = from_message(message)
        deliveries = counted(wire) + 1
        persistent = is_persistent(message)
        redelivered = bool(message.delivery_info.get("redelivered"))
        eta = wire.get(ETA_HEADER)
        now = self.now()
        remaining = eta - now if isinstance(eta, float | int) else until(envelope.headers.get("eta"), now)
        if remaining > ETA_EARLY_S:  # back from a delay hop early, or a producer that does not delay
            self._delay(consumer, tag, queue, envelope, deliveries - (not redelivered), message, remaining)
            return None
        if redelivered:
            # its consumer died or lost its connection: that delivery failed
            limit = self.options.delivery_limit
            if deliveries >= limit:
                reason = (
                    f"delivered {deliveries} times without being settled (its consumers kept dying "
                    f"or losing the broker); task_delivery_limit={limit}"
                )
                self._dead_letter(consumer, tag, queue, envelope, persistent, deliveries, reason)
                self._fetch_dead.append(DeadLetter("", queue, reason, envelope, now, deliveries, persistent))
            else:
                # counted in a copy at the back of the queue
                self._move(
                    consumer, tag, message, envelope, {COUNT_HEADER: deliveries}, "", queue, "requeueing"
                )
            return None
        consumer.by_tag[tag] = (queue, message)
        return Delivery(queue, envelope, f"{consumer.gen}.{tag}", deliveries, persistent, consumer.name)

    def _move(
        self,
        consumer: _Consumer,
        tag: int,
        message: Any,
        envelope: Envelope,
        extra: dict[str, Any] | None,
        exchange: str,
        queue: str,
        what: str,
    ) -> None:
        """Publish a copy of a delivered message (confirmed), then ack the original: the
        message is never in neither place, at worst briefly in both."""
        copy = to_message(envelope, is_persistent(message), priority_of(message), extra)
        self._send([(copy, exchange, queue, True)], f"{what} a message of {queue!r}")
        self._settle(consumer, [tag])

    def _delay(
        self,
        consumer: _Consumer,
        tag: int,
        queue: str,
        envelope: Envelope,
        count: int,
        message: Any,
        remaining: float,
    ) -> None:
        """Send a message that is not due yet to the delay hop for the rest of its wait."""
        level = delay_level(remaining)
        self.declarations.ensure_delay(level)
        extra = {COUNT_HEADER: count, LEVEL_HEADER: level, ETA_HEADER: self.now() + remaining}
        self._move(consumer, tag, message, envelope, extra, DELAY_EXCHANGE, queue, "scheduling")

    def _dead_letter(
        self,
        consumer: _Consumer | None,
        tag: int | None,
        queue: str,
        envelope: Envelope,
        persistent: bool,
        deliveries: int,
        reason: str,
    ) -> None:
        self.declarations.ensure_dead()
        headers = {
            "x-celeriac-reason": reason,
            "x-celeriac-queue": queue,
            "x-celeriac-failed-at": self.now(),
            "x-celeriac-deliveries": deliveries,
            "x-celeriac-id": uuid.uuid4().hex,
            "x-celeriac-persistent": persistent,
        }
        letter = to_message(envelope, True, 0, headers)
        self._send([(letter, DEAD_EXCHANGE, queue, True)], f"dead-lettering a message of {queue!r}")
        if consumer is not None and tag is not None:
            self._settle(consumer, [tag])

    def _settle_locked(self, consumer: _Consumer, tags: Sequence[int]) -> None:
        with consumer.lock:
            self._settle(consumer, tags)

    def _settle(self, consumer: _Consumer, tags: Sequence[int], forget: bool = True) -> None:
        """basic.ack ``tags``; one ack with multiple=True when nothing older is left open.
        ``forget=False`` keeps them known as running (early ack)."""
        if forget:
            for t in tags:
                consumer.by_tag.pop(t, None)
                consumer.started.discard(t)
        todo = [t for t in tags if t in consumer.unacked]
        if not todo:
            return
        top = max(todo)
        wanted = set(todo)
        channel = consumer.channel
        if len(todo) > 1 and all(t in wanted for t in consumer.unacked if t <= top):
            channel.basic_ack(top, multiple=True)
        else:
            for t in sorted(todo):
                channel.basic_ack(t)
        consumer.unacked -= wanted

    def _split(self, batch: Sequence[Delivery]) -> dict[_Consumer, list[int]]:
        """Group tags by the live consumer that holds them; tags of a lost connection are
        dropped (RabbitMQ already put those messages back)."""
        groups: dict[_Consumer, list[int]] = {}
        for delivery in batch:
            held = self._holder(delivery.tag)
            if held is not None:
                groups.setdefault(held[0], []).append(held[1])
        return groups

    def _holder(self, tag: str) -> tuple[_Consumer, int] | None:
        """The live consumer and AMQP delivery tag behind a delivery's tag (``gen.tag``)."""
        gen, _, raw = tag.partition(".")
        consumer = self._by_gen.get(int(gen)) if gen.isdigit() else None
        return (consumer, int(raw)) if consumer is not None and raw.isdigit() else None

    def _on_consumer(self, consumer: _Consumer, what: str, fn: Any) -> None:
        try:
            call(what, self.location, fn)
        except BrokerError:
            self._lose(consumer)
            raise

    def fetched_dead_letters(self) -> list[DeadLetter]:
        found, self._fetch_dead = self._fetch_dead, []
        return found

    def still_held(self, batch: Sequence[Delivery]) -> list[Delivery]:
        return [d for d in batch if self._holder(d.tag) is not None]

    def _mark_started(self, batch: Sequence[Delivery]) -> list[Delivery]:
        """``basic.ack`` of the deliveries whose connection is alive. RabbitMQ's lease is the
        connection: a delivery of a lost one is back in its queue (another consumer may run it),
        so it is returned as lost, never acked on the new connection. No lease time runs out
        while the connection lives: a stalled consumer keeps its deliveries until RabbitMQ
        closes its channel (``consumer_timeout``), and then they are lost as above."""
        groups = self._split(batch)
        lost = [d for d in batch if self._holder(d.tag) is None]
        for consumer, tags in groups.items():

            def mark(consumer: _Consumer = consumer, tags: list[int] = tags) -> None:
                with consumer.lock:
                    self._settle(consumer, tags, forget=False)
                    consumer.started.update(tags)

            self._on_consumer(consumer, "acking started tasks", mark)
        return lost

    def _ack(self, batch: Sequence[Delivery]) -> None:
        for consumer, tags in self._split(batch).items():
            self._on_consumer(consumer, "acking", lambda c=consumer, t=tags: self._settle_locked(c, t))

    def _reject(self, batch: Sequence[Delivery], requeue: bool, reason: str) -> None:
        for delivery in batch:
            for consumer, tags in self._split([delivery]).items():
                with consumer.lock:
                    self._reject_one(consumer, tags[0], delivery, requeue, reason)

    def _reject_one(
        self, consumer: _Consumer, tag: int, delivery: Delivery, requeue: bool, reason: str
    ) -> None:
        if tag not in consumer.unacked:
            return  # started (already acked) or settled: nothing left to reject
        if requeue:
            if tag in consumer.by_tag:
                # its task ran: the copy carries this delivery in its count, so the next one
                # is a redelivery (RabbitMQ's own flag would read as a consumer that died)
                queue, message = consumer.by_tag[tag]
                count = {COUNT_HEADER: delivery.deliveries}
                self._on_consumer(
                    consumer,
                    "requeueing",
                    lambda c=consumer, t=tag, m=message, q=queue: self._move(
                        c, t, m, delivery.envelope, count, "", q, "requeueing"
                    ),
                )
            return
        self._dead_letter(
            consumer,
            tag,
            delivery.queue,
            delivery.envelope,
            delivery.persistent,
            delivery.deliveries,
            reason,
        )

    def _hand_back(self, batch: Sequence[Delivery]) -> None:
        for delivery in batch:
            for consumer, tags in self._split([delivery]).items():
                tag = tags[0]
                with consumer.lock:
                    if consumer.queues:
                        self._on_consumer(consumer, "pausing a consumer", lambda c=consumer: self._pause(c))
                    if tag in consumer.unacked and tag in consumer.by_tag:
                        queue, message = consumer.by_tag[tag]
                        self._on_consumer(
                            consumer,
                            "handing back",
                            lambda c=consumer, t=tag, q=queue, m=message: self._give_back(c, t, q, m),
                        )

    def _pause(self, consumer: _Consumer) -> None:
        """Stop RabbitMQ pushing to ``consumer`` before handing messages back, or the copies
        come straight back to its free window slots; hand back what it pushed and fetch has not
        handed out yet. The next fetch subscribes again."""
        for queue in consumer.queues:
            consumer.channel.basic_cancel(f"{consumer.name}:{queue}")
        consumer.queues = ()
        while consumer.buffer:
            queue, message = consumer.buffer.popleft()
            self._give_back(consumer, message.delivery_tag, queue, message)

    def _give_back(self, consumer: _Consumer, tag: int, queue: str, message: Any) -> None:
        """Put an unstarted message back on its queue (at the back) with its count unchanged."""
        envelope, wire = from_message(message)
        extra = {COUNT_HEADER: counted(wire)} if counted(wire) else None
        self._move(consumer, tag, message, envelope, extra, "", queue, "handing back")

    def extend_leases(self, consumers: Sequence[str]) -> int:
        """Nothing to renew: RabbitMQ holds a delivery for as long as its consumer's connection lives."""
        return 0

    def consumer_lost(
        self,
        consumer: str,
        running: Sequence[str],
        reason: str,
        running_to: str = "queue",
        count_unstarted: bool = False,
    ) -> list[str]:
        """Let a consumer go. Only the process that holds the consumer's channel can settle
        what it was running; elsewhere its connection died with it and RabbitMQ requeues
        (``count_unstarted`` does not apply: RabbitMQ decides what a redelivery is)."""
        state = self._consumers.get(consumer)
        if state is None:
            return []
        dead: list[str] = []
        with state.lock:
            try:
                for delivery_tag in running:
                    held = self._holder(delivery_tag)
                    tag = held[1] if held is not None and held[0] is state else None
                    if tag is None or tag not in state.unacked or tag not in state.by_tag:
                        continue
                    queue, message = state.by_tag[tag]
                    envelope, wire = from_message(message)
                    deliveries = counted(wire) + 1
                    persistent = is_persistent(message)
                    if running_to == "ack":
                        self._settle(state, [tag])
                    elif running_to == "dead" or deliveries >= self.options.delivery_limit:
                        self._dead_letter(state, tag, queue, envelope, persistent, deliveries, reason)
                        dead.append(delivery_tag)
                # what it never started goes back uncounted; what it ran is requeued by RabbitMQ
                # when the connection closes, and counts as a failed delivery
                unstarted = [
                    t
                    for t in sorted(state.by_tag)
                    if t in state.unacked and f"{state.gen}.{t}" not in running
                ]
                for tag in unstarted:
                    queue, message = state.by_tag[tag]
                    self._give_back(state, tag, queue, message)
            finally:
                self._lose(state)
        return dead

    def recover_lost(self, reason: str) -> list[DeadLetter]:
        """Nothing to recover: an early-acked message is gone from RabbitMQ once acked (as in
        Celery); a task lost with its node is reported by that node's master, if it lives."""
        return []

    # -- inspection ---------------------------------------------------------------------------

    def queue_length(self, queue: str) -> QueueLength:
        ready, consumers = self.admin.counts(queue)
        reserved = running = 0
        for consumer in self._consumers.values():
            for tag in consumer.unacked:
                held = consumer.by_tag.get(tag)
                if held is not None and held[0] == queue:
                    reserved += 1
            running += sum(1 for t in consumer.started if t in consumer.by_tag)
            reserved += sum(1 for q, _ in consumer.buffer if q == queue)
        return QueueLength(queue, ready, 0, reserved, running, consumers=consumers)

    def purge(self, queue: str) -> int:
        return self.admin.purge(queue)

    # -- side queues: queue registry, dead letters, heartbeats --------------------------------

    def queue_names(self) -> list[str]:
        return self.side_queues.queue_names()

    def dead_letters(self, limit: int = 100, queue: str | None = None) -> list[DeadLetter]:
        return self.side_queues.dead_letters(limit, queue)

    def dead_letter_count(self, queue: str | None = None) -> int:
        return self.side_queues.dead_letter_count(queue)

    def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        return self.side_queues.requeue_dead_letters(ids)

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        return self.side_queues.purge_dead_letters(ids)

    def put_node_stats(self, node: str, payload: bytes, ttl: float) -> None:
        self.side_queues.put_node_stats(node, payload, ttl)

    def node_stats(self) -> list[NodeStats]:
        return self.side_queues.node_stats()

    def housekeeping(self) -> None:
        self.side_queues.housekeeping()

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        for consumer in list(self._consumers.values()):
            self._lose(consumer)
        self.admin.close()
        self.pool.close()
