"""The Redis broker (``redis://``, ``rediss://``, ``unix://``, ``sentinel://``): Celery's layout, safe leases.

Layout
------
A queue is a Redis list named after the queue holding kombu's JSON envelope,
exactly as Celery writes it: ``{"body": <base64>, "content-type", "content-encoding",
"headers": <protocol 2 headers>, "properties": {..., "delivery_info": {"exchange",
"routing_key"}, "priority", "body_encoding": "base64", "delivery_tag"}}``.
Producers ``LPUSH``, consumers take the right end, so a stock Celery producer
feeds celeriac workers and a celeriac producer feeds Celery workers. Priorities
follow kombu's steps: a message of priority 3-5 goes to the list
``<queue>\\x06\\x163``, 6-8 to ``...6``, 9 to ``...9``; as with Celery on Redis,
**lower numbers run first**. Every key is listed in :mod:`celeriac.brokers.redis.scripts`.

Delivery
--------
Durable queues (the default) are at-least-once with ``task_acks_late``: one Lua
script moves up to a child's window from the list into the child's *held* hash
and sets the child's lease deadline, atomically; an ack deletes from the hash.
The worker's master renews the leases of its live children, so a long task is
never handed to a second worker (Celery's ``visibility_timeout`` trap does not
exist here); a child that dies is released by its master at once, and the
leases of a node that died run out and are reclaimed by any other worker. An
idle child blocks on ``BLMOVE`` into its own *landing* list, which its lease
covers too, so no message is ever only in a process's memory.

Transient queues (``Queue(..., durable=False)``) take the fast path: messages
are popped and run with no bookkeeping. They are at-most-once: a message is
lost if its child dies, and every transient message is lost if Redis restarts
without persistence.

Durable messages survive a Redis restart only as far as Redis persists them:
run Redis with ``appendonly yes`` (the worker warns at start when Redis keeps
nothing on disk). Redis Cluster is not supported (the scripts touch keys of
several queues).

Transport options (``broker_transport_options``): ``global_keyprefix`` (kombu's
name: a prefix for every key), ``socket_timeout``, ``socket_connect_timeout``,
``socket_keepalive``, ``health_check_interval``; for a ``sentinel://`` URL
``master_name``, ``sentinel_kwargs`` and ``min_other_sentinels``
(:mod:`~celeriac.brokers.redis.sentinel`). Celery's ``visibility_timeout``
is accepted and not needed (leases are renewed while a task runs).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from celeriac.brokers.base import (
    QUEUE,
    Broker,
    BrokerOptions,
    DeadLetter,
    Delivery,
    NodeStats,
    Outgoing,
    QueueLength,
    publish_with_retry,
)
from celeriac.brokers.redis import scripts
from celeriac.brokers.redis.connection import PoolStats, RedisConnector
from celeriac.brokers.redis.sentinel import OPTION_NAMES as SENTINEL_OPTIONS
from celeriac.errors import BrokerError, ConfigurationError
from celeriac.protocol.entities import Queue
from celeriac.protocol.message import Envelope

logger = logging.getLogger("celeriac.broker")

#: Where a transient message's delivery count travels once its task requeued it (durable
#: messages keep theirs in Redis: ``celeriac.redelivered``).
COUNT_PROPERTY = "x-celeriac-deliveries"
#: kombu's separator between a queue name and its priority step.
SEP = "\x06\x16"
US = "\x1f"
PRIORITY_STEPS = (0, 3, 6, 9)
#: Longest an idle consumer blocks on one list before it looks at the others again.
BLOCK_SLICE_S = 0.05

_SOCKET_OPTIONS = ("socket_timeout", "socket_connect_timeout", "socket_keepalive", "health_check_interval")
_ACCEPTED_OPTIONS = frozenset(
    {
        *_SOCKET_OPTIONS,
        *SENTINEL_OPTIONS,
        "global_keyprefix",
        # kombu/Celery options that need nothing here
        "visibility_timeout",
        "max_connections",
        "fanout_prefix",
        "fanout_patterns",
        "unacked_restore_limit",
        "retry_on_timeout",
    }
)


def priority_step(priority: int | None) -> int:
    """kombu's step for a priority: the largest of 0, 3, 6, 9 not above it (clamped to 0-9)."""
    value = min(max(int(priority or 0), 0), 9)
    return max(step for step in PRIORITY_STEPS if step <= value)


def list_key(prefix: str, queue: str, priority: int | None = 0) -> str:
    """The list holding ``queue``'s ready messages of ``priority`` (Celery's name)."""
    step = priority_step(priority)
    return f"{prefix}{queue}{SEP}{step}" if step else f"{prefix}{queue}"


def to_kombu(envelope: Envelope, exchange: str, routing_key: str, priority: int) -> bytes:
    """Lay an envelope out as kombu's JSON message (what Celery pushes onto a Redis list)."""
    properties = dict(envelope.properties)
    properties["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
    properties["priority"] = priority
    properties["body_encoding"] = "base64"
    properties["delivery_tag"] = str(uuid.uuid4())
    return orjson.dumps(
        {
            "body": base64.b64encode(envelope.body).decode("ascii"),
            "content-encoding": envelope.content_encoding,
            "content-type": envelope.content_type,
            "headers": dict(envelope.headers),
            "properties": properties,
        }
    )


def from_kombu(raw: bytes) -> Envelope:
    """Read kombu's JSON message; :class:`ValueError` says what is wrong with it."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a kombu message (not JSON: {exc})") from None
    if not isinstance(message, dict):
        raise ValueError(f"not a kombu message (a JSON {type(message).__name__}, not an object)")
    body, headers = message.get("body"), message.get("headers")
    properties = message.get("properties")
    content_type = message.get("content-type")
    if not isinstance(body, str | bytes) or not isinstance(headers, dict) or not isinstance(properties, dict):
        raise ValueError("not a kombu message (needs 'body', 'headers' and 'properties')")
    if not isinstance(content_type, str):
        raise ValueError("kombu message without a 'content-type'")
    encoding = properties.get("body_encoding")
    if encoding == "base64":
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise ValueError(f"message body is not valid base64: {exc}") from None
    elif encoding in (None, "utf-8"):
        data = body.encode() if isinstance(body, str) else body
    else:
        raise ValueError(f"unknown body_encoding {encoding!r} (expected 'base64')")
    return Envelope(
        body=data,
        content_type=content_type,
        content_encoding=str(message.get("content-encoding") or "utf-8"),
        headers=headers,
        properties=properties,
    )


def recounted(raw: bytes, deliveries: int) -> bytes:
    """A transient message (no bookkeeping in Redis) put back by its task's requeue: its count
    travels in the message, and kombu's ``redelivered`` flag is set as kombu sets it when it
    restores a message, so a Celery worker sees the redelivery too."""
    message = orjson.loads(raw)
    properties = message["properties"]
    properties[COUNT_PROPERTY] = deliveries
    delivery_info = properties.get("delivery_info")
    if isinstance(delivery_info, dict):
        delivery_info["redelivered"] = True
    return orjson.dumps(message)


def _unreadable(raw: bytes) -> Envelope:
    """What can be read of a message :func:`from_kombu` refused: its bytes as the body, and
    its headers if they are readable (they name the task and its id, for its result)."""
    headers: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        message = orjson.loads(raw)
        headers = message.get("headers") if isinstance(message, dict) else None
    if not isinstance(headers, dict):
        headers = {}
    return Envelope(raw, "application/x-unreadable", "binary", headers, {})


@dataclass(frozen=True, slots=True)
class _Popped:
    """A transient message this process popped: enough to hand it back or dead-letter it."""

    queue: str
    key: str
    raw: bytes


class RedisBroker(Broker):
    """Queues in Redis lists, in Celery's layout; leases and dead letters in Lua."""

    scheme = "redis"

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        super().__init__(url, options)
        transport = self.transport_options(_ACCEPTED_OPTIONS, "Redis")
        prefix = transport.get("global_keyprefix", "")
        if not isinstance(prefix, str):
            raise ConfigurationError(
                f"broker_transport_options global_keyprefix={prefix!r}: expected a string"
            )
        self.prefix = prefix
        socket = {k: transport[k] for k in _SOCKET_OPTIONS if k in transport}
        socket.setdefault("socket_connect_timeout", self.options.connect_timeout)
        socket.setdefault("socket_keepalive", True)
        sentinel = {k: transport[k] for k in SENTINEL_OPTIONS if k in transport}
        self.conn = RedisConnector(
            url, "broker_url", self.options.pool_limit, self.options.pool_timeout, socket, sentinel
        )
        self._declared: dict[str, Queue] = {}
        self._known: set[str] = set()
        self._owner: dict[str, str] = {}  # durable tag -> consumer that holds it
        #: consumers whose FETCH failed: Redis may have leased them messages whose reply was lost
        self._unsure: set[str] = set()
        #: consumer -> the connector's loss count when its held messages were last checked
        self._checked: dict[str, int] = {}
        self._popped: dict[str, _Popped] = {}  # transient tag -> what was popped
        self._transient_tags = itertools.count(1)
        self._rotation = 0
        self._transient_queues: set[str] = set()
        self._registry_loaded = 0.0
        #: poison messages this process's fetches dead-lettered, until fetched_dead_letters()
        self._fetch_dead: list[DeadLetter] = []

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.conn.location

    def _k(self, name: str) -> str:
        return self.prefix + name

    def _run(self, name: str, args: Sequence[Any], what: str) -> Any:
        """Run the script ``name`` of :mod:`~celeriac.brokers.redis.scripts` (the prefix first)."""
        return self.conn.run(what, getattr(scripts, name), args=[self.prefix, *args])

    def _keys(self, queue: str) -> list[str]:
        return [list_key(self.prefix, queue, step) for step in PRIORITY_STEPS]

    def pool_stats(self) -> PoolStats:
        """How this process's connection pool is used (connections in use, wait times)."""
        return self.conn.pool_stats()

    # -- declarations -----------------------------------------------------------------------

    def declare_queue(self, queue: Queue) -> None:
        declaration = orjson.dumps(
            {
                "durable": queue.durable,
                "exchange": queue.exchange.name,
                "exchange_type": queue.exchange.type,
                "routing_key": queue.routing_key,
            }
        )

        def declare(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.hset(self._k("celeriac.queues"), queue.name, declaration)
            if queue.exchange.name:
                pattern = queue.routing_key if queue.exchange.type == "topic" else ""
                binding = f"{queue.routing_key}{SEP}{pattern}{SEP}{queue.name}"
                pipe.sadd(self._k(f"_kombu.binding.{queue.exchange.name}"), binding)
            pipe.execute()

        self.conn.call(f"declaring queue {queue.name!r}", declare)
        self._declared[queue.name] = queue
        self._known.add(queue.name)
        if queue.durable:
            self._transient_queues.discard(queue.name)
        else:
            self._transient_queues.add(queue.name)

    def _load_registry(self) -> None:
        """Learn which queues other processes declared transient (at most once a second)."""
        now = time.monotonic()
        if now - self._registry_loaded < 1.0:
            return
        self._registry_loaded = now
        raw = self.conn.call("reading the queue registry", lambda c: c.hgetall(self._k("celeriac.queues")))
        for name, declaration in raw.items():
            queue = name.decode() if isinstance(name, bytes) else name
            if queue in self._declared:
                continue
            try:
                durable = bool(orjson.loads(declaration).get("durable", True))
            except (orjson.JSONDecodeError, AttributeError):
                durable = True
            if durable:
                self._transient_queues.discard(queue)
            else:
                self._transient_queues.add(queue)

    # -- producer side ----------------------------------------------------------------------

    def _route_of(self, queue: str) -> tuple[str, str]:
        declared = self._declared.get(queue)
        if declared is None:
            return "", queue
        return declared.exchange.name, declared.routing_key

    def _publish(self, batch: Sequence[Outgoing]) -> None:
        now = self.now()
        pushes: list[tuple[str, list[bytes]]] = []
        scheduled: dict[str, dict[bytes, float]] = {}
        new_queues = []
        for item in batch:
            exchange, routing_key = self._route_of(item.queue)
            raw = to_kombu(item.envelope, exchange, routing_key, item.priority)
            key = list_key(self.prefix, item.queue, item.priority)
            if item.queue not in self._known:
                self._known.add(item.queue)
                new_queues.append(item.queue)
            if item.eta is not None and item.eta > now:
                member = key.encode() + US.encode() + raw
                scheduled.setdefault(item.queue, {})[member] = item.eta
            elif pushes and pushes[-1][0] == key:
                pushes[-1][1].append(raw)
            else:
                pushes.append((key, [raw]))

        def write(client: Any) -> None:
            pipe = client.pipeline(transaction=len(batch) > 1)
            for queue in new_queues:
                pipe.hsetnx(self._k("celeriac.queues"), queue, b"{}")
            for key, raws in pushes:
                pipe.lpush(key, *raws)
            for queue, members in scheduled.items():
                pipe.zadd(self._k(f"celeriac.schedule.{queue}"), members)
            pipe.execute()

        self._with_retry(f"publishing {len(batch)} message(s)", write)

    def _with_retry(self, what: str, fn: Any) -> None:
        """Run ``fn(client)``, retrying lost connections per ``task_publish_retry_policy``."""
        publish_with_retry(self.options, what, lambda: self.conn.call(what, fn))

    # -- consumer side ----------------------------------------------------------------------

    def _fetch(
        self, queues: Sequence[str], n: int, timeout: float, consumer: str, ack: Sequence[Delivery]
    ) -> list[Delivery]:
        self._load_registry()
        losses = self.conn.losses
        if consumer in self._unsure or self._checked.setdefault(consumer, losses) != losses:
            self._release_strays(consumer)
        acks = self._durable_tags(ack)
        durable = [q for q in queues if q not in self._transient_queues]
        transient = [q for q in queues if q in self._transient_queues]
        if len(durable) > 1:  # take turns at being first, as Celery's round robin does
            self._rotation = (self._rotation + 1) % len(durable)
            durable = durable[self._rotation :] + durable[: self._rotation]
        deadline = time.monotonic() + timeout
        while True:
            got: list[Delivery] = []
            wake = -1.0
            wait_queue = durable[0] if durable and timeout > 0 else ""
            if durable or acks:
                got, wake = self._lease(durable, n, consumer, acks, wait_queue)
                self._forget(acks)
                acks = []
            if transient and len(got) < n:
                got += self._pop(transient, n - len(got))
            remaining = deadline - time.monotonic()
            if got or remaining <= 0:
                return got
            # one list is watched at a time: look at the others (priorities, queues) every slice
            wait = min(remaining, BLOCK_SLICE_S) if durable else remaining
            if wake >= 0:
                wait = min(wait, max(wake, 0.001))
            got = self._block(durable, transient, consumer, wait)
            if got:
                return got

    def _durable_tags(self, batch: Sequence[Delivery]) -> list[str]:
        """The tags of ``batch`` that Redis must settle (transient ones are forgotten now)."""
        tags = []
        for delivery in batch:
            if self._popped.pop(delivery.tag, None) is None and delivery.tag in self._owner:
                tags.append(delivery.tag)
        return tags

    def _forget(self, tags: Sequence[str]) -> None:
        """Settled in Redis: the tags are not ours any more. Forgotten only then, so that a
        settlement that failed on the way is sent again with the next one."""
        for tag in tags:
            self._owner.pop(tag, None)

    def _release_strays(self, consumer: str) -> None:
        """Settle what Redis holds for ``consumer`` that the consumer does not know of.

        Run after a FETCH whose reply was lost (the script ran, Redis runs a script whole, but
        the connection broke before the answer arrived), and after any lost connection: Redis
        may have come back, or failed over, without writes it had acknowledged, such as an
        ack. Either way the messages sit in the consumer's held hash, unknown to it, and its
        master would renew their lease for as long as the child lives. The ones marked started
        (early ack) ran and are acked; the others go back to their queue (at least once).
        """
        losses = self.conn.losses
        held_key, started_key = self._k(f"celeriac.held.{consumer}"), self._k(f"celeriac.started.{consumer}")

        def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.hkeys(held_key)
            pipe.smembers(started_key)
            return pipe.execute()

        held, started = self.conn.call("reading held messages", read)
        known = {tag for tag, owner in self._owner.items() if owner == consumer}
        tags = (h.decode() if isinstance(h, bytes) else str(h) for h in held)
        # "~wait" is the landing list's entry, not a message
        strays = [t for t in tags if t not in known and not t.startswith("~")]
        ran = {s.decode() if isinstance(s, bytes) else str(s) for s in started}
        back = [t for t in strays if t not in ran]
        if back:
            self._run("REJECT", [consumer, "hand_back", "", *back], "handing back messages of a lost reply")
            logger.warning(
                "handed %d message(s) back to their queue: Redis held them for %s, which had not "
                "received them (a fetch reply lost with the connection) or had settled them (an ack "
                "Redis lost in a restart or a failover)",
                len(back),
                consumer,
            )
        done = [t for t in strays if t in ran]
        if done:
            self.conn.call("acking started messages", lambda c: self._drop_held(c, {consumer: done}))
            logger.warning(
                "acked %d started message(s) of %s again: Redis had lost the ack", len(done), consumer
            )
        self._unsure.discard(consumer)
        self._checked[consumer] = losses

    def _drop_held(self, client: Any, groups: dict[str, list[str]]) -> None:
        """Ack: delete the tags of each consumer from its held hash and started set."""
        pipe = client.pipeline(transaction=False)
        for consumer, tags in groups.items():
            pipe.hdel(self._k(f"celeriac.held.{consumer}"), *tags)
            pipe.srem(self._k(f"celeriac.started.{consumer}"), *tags)
        pipe.execute()

    def _lease(
        self, queues: Sequence[str], n: int, consumer: str, acks: Sequence[str], wait_queue: str
    ) -> tuple[list[Delivery], float]:
        args: list[Any] = [
            consumer,
            n if queues else 0,
            self.options.lease_seconds,
            self.options.delivery_limit,
            wait_queue,
            list_key(self.prefix, wait_queue) if wait_queue else "",
            len(acks),
            *acks,
        ]
        for queue in queues:
            args += [queue, len(PRIORITY_STEPS), *self._keys(queue)]
        try:
            reply = self._run("FETCH", args, f"fetching from {', '.join(queues) or 'no queue'}")
        except BrokerError:
            self._unsure.add(consumer)
            raise
        wake = float(reply[0])
        end = len(reply) - 2 * int(reply[1])  # the dead letters' (id, record) pairs follow
        if end < len(reply):  # reported to the worker, which logs them and fails their results
            self._fetch_dead += [
                self._dead_letter(str(reply[i]), reply[i + 1]) for i in range(end, len(reply), 2)
            ]
        out: list[Delivery] = []
        garbage: list[tuple[str, str, int, bytes, str]] = []
        for i in range(2, end, 4):
            tag = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
            queue = reply[i + 1].decode() if isinstance(reply[i + 1], bytes) else str(reply[i + 1])
            self._owner[tag] = consumer
            try:
                envelope = from_kombu(reply[i + 3])
            except ValueError as exc:
                garbage.append((tag, queue, int(reply[i + 2]), reply[i + 3], str(exc)))
                continue
            persistent = envelope.properties.get("delivery_mode", 2) != 1
            out.append(Delivery(queue, envelope, tag, int(reply[i + 2]), persistent, consumer))
        for tag, queue, deliveries, raw, reason in garbage:
            self._owner.pop(tag, None)
            self._run("REJECT", [consumer, "dead", reason, tag], "dead-lettering an unreadable message")
            self._fetch_dead.append(DeadLetter("", queue, reason, _unreadable(raw), self.now(), deliveries))
        return out, wake

    def fetched_dead_letters(self) -> list[DeadLetter]:
        found, self._fetch_dead = self._fetch_dead, []
        return found

    def _pop(self, queues: Sequence[str], n: int) -> list[Delivery]:
        keys = [(queue, key) for queue in queues for key in self._keys(queue)]

        def pop(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for _, key in keys:
                pipe.rpop(key, n)
            return pipe.execute()

        replies = self.conn.call(f"popping from {', '.join(queues)}", pop)
        popped = [
            (queue, key, raw) for (queue, key), got in zip(keys, replies, strict=True) for raw in got or ()
        ]
        if len(popped) > n:  # more than asked for: the rest goes back to the front, in order
            self._push_back([(key, raw) for _, key, raw in popped[n:]])
            popped = popped[:n]
        return [d for d in (self._transient_delivery(*item) for item in popped) if d is not None]

    def _push_back(self, items: Sequence[tuple[str, bytes]]) -> None:
        def push(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for key, raw in reversed(items):
                pipe.rpush(key, raw)
            pipe.execute()

        self.conn.call("handing messages back", push)

    def _transient_delivery(self, queue: str, key: str, raw: bytes) -> Delivery | None:
        try:
            envelope = from_kombu(raw)
        except ValueError as exc:
            self._dead_letter_raw(queue, key, raw, 1, str(exc))
            self._fetch_dead.append(DeadLetter("", queue, str(exc), _unreadable(raw), self.now(), 1, False))
            return None
        deliveries = 1
        if COUNT_PROPERTY in envelope.properties:  # requeued by its task: a redelivery
            properties = dict(envelope.properties)
            count = properties.pop(COUNT_PROPERTY)
            deliveries += count if isinstance(count, int) and count > 0 else 0
            envelope = replace(envelope, properties=properties)
        tag = f"t{next(self._transient_tags)}"
        self._popped[tag] = _Popped(queue, key, raw)
        return Delivery(queue, envelope, tag, deliveries, persistent=False)

    def _dead_letter_raw(self, queue: str, key: str, raw: bytes, deliveries: int, reason: str) -> None:
        self._run("DEAD", [queue, key, deliveries, reason, raw], "dead-lettering a message")

    def _block(
        self, durable: Sequence[str], transient: Sequence[str], consumer: str, wait: float
    ) -> list[Delivery]:
        """Wait up to ``wait`` seconds for a message; a durable one lands in the landing list."""
        if durable:
            source = list_key(self.prefix, durable[0])
            landing = self._k(f"celeriac.landing.{consumer}")
            self.conn.call(
                "waiting for messages",
                lambda client: client.blmove(source, landing, wait, src="RIGHT", dest="LEFT"),
            )
            return []  # the next FETCH leases what landed
        keys = [key for queue in transient for key in self._keys(queue)]
        reply = self.conn.call("waiting for messages", lambda client: client.brpop(keys, wait))
        if not reply:
            return []
        key = reply[0].decode()
        queue = next(q for q in transient if key in self._keys(q))
        delivery = self._transient_delivery(queue, key, reply[1])
        return [delivery] if delivery is not None else []

    def _by_consumer(self, batch: Sequence[Delivery]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for delivery in batch:
            consumer = self._owner.get(delivery.tag)
            if consumer is not None:
                groups.setdefault(consumer, []).append(delivery.tag)
        return groups

    def _mark_started(self, batch: Sequence[Delivery]) -> list[Delivery]:
        # transient messages have no lease; a durable tag this process forgot is not its own
        lost = {d.tag for d in batch if d.tag not in self._popped and d.tag not in self._owner}
        limit = self.options.delivery_limit
        for consumer, tags in self._by_consumer(batch).items():
            reply = self._run("MARK_STARTED", [consumer, limit, *tags], "marking tasks started")
            gone = [t.decode() if isinstance(t, bytes) else str(t) for t in reply]
            self._forget(gone)
            lost.update(gone)
        return [d for d in batch if d.tag in lost]

    def _ack(self, batch: Sequence[Delivery]) -> None:
        self._durable_tags(batch)  # forgets the transient ones
        groups = self._by_consumer(batch)
        if not groups:
            return
        self.conn.call("acking", lambda client: self._drop_held(client, groups))
        self._forget([tag for tags in groups.values() for tag in tags])

    def _reject(self, batch: Sequence[Delivery], requeue: bool, reason: str) -> None:
        popped = [(d, self._popped.pop(d.tag)) for d in batch if d.tag in self._popped]
        if requeue:
            self._push_back([(p.key, recounted(p.raw, d.deliveries)) for d, p in popped])
        else:
            for d, p in popped:
                self._dead_letter_raw(p.queue, p.key, p.raw, d.deliveries, reason)
        how = "requeue" if requeue else "dead"
        for consumer, tags in self._by_consumer(batch).items():
            self._run("REJECT", [consumer, how, reason, *tags], "rejecting")
            self._forget(tags)

    def _hand_back(self, batch: Sequence[Delivery]) -> None:
        popped = [self._popped.pop(d.tag) for d in batch if d.tag in self._popped]
        self._push_back([(p.key, p.raw) for p in popped])  # as popped: its count unchanged
        for consumer, tags in self._by_consumer(batch).items():
            self._run("REJECT", [consumer, "hand_back", "", *tags], "handing back")
            self._forget(tags)

    def extend_leases(self, consumers: Sequence[str]) -> int:
        if not consumers:
            return 0
        return int(self._run("EXTEND", [self.options.lease_seconds, *consumers], "renewing leases"))

    def consumer_lost(
        self,
        consumer: str,
        running: Sequence[str],
        reason: str,
        running_to: str = QUEUE,
        count_unstarted: bool = False,
    ) -> list[str]:
        dead = self._run(
            "LOST",
            [consumer, reason, running_to, self.options.delivery_limit, int(not count_unstarted), *running],
            f"releasing the messages of {consumer}",
        )
        for tag in running:
            self._owner.pop(tag, None)
        return [t.decode() if isinstance(t, bytes) else str(t) for t in dead]

    def recover_lost(self, reason: str) -> list[DeadLetter]:
        ids = self._run("RECOVER", [reason, self.options.delivery_limit], "recovering lost messages")
        if not ids:
            return []
        records = self.conn.call(
            "reading dead letters", lambda c: c.hmget(self._k("celeriac.dead"), [str(i) for i in ids])
        )
        return [self._dead_letter(str(i), r) for i, r in zip(ids, records, strict=True) if r is not None]

    # -- inspection -------------------------------------------------------------------------

    def queue_length(self, queue: str) -> QueueLength:
        ready, scheduled, reserved, running = self._run(
            "LENGTH", [queue, *self._keys(queue)], f"measuring queue {queue!r}"
        )
        return QueueLength(queue, int(ready), int(scheduled), int(reserved), int(running))

    def queue_lengths(self, queues: Sequence[str]) -> list[QueueLength]:
        script = self.conn.script(scripts.LENGTH)

        def measure(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for queue in queues:
                script(args=[self.prefix, queue, *self._keys(queue)], client=pipe)
            return pipe.execute()

        rows = self.conn.call(f"measuring {len(queues)} queues", measure) if queues else []
        return [QueueLength(q, *(int(n) for n in row)) for q, row in zip(queues, rows, strict=True)]

    def queue_names(self) -> list[str]:
        names = self.conn.call("listing queues", lambda c: c.hkeys(self._k("celeriac.queues")))
        return sorted({n.decode() if isinstance(n, bytes) else n for n in names} | set(self._declared))

    def purge(self, queue: str) -> int:
        keys = [*self._keys(queue), self._k(f"celeriac.schedule.{queue}")]

        def purge(client: Any) -> int:
            pipe = client.pipeline(transaction=True)
            for key in keys[:-1]:
                pipe.llen(key)
            pipe.zcard(keys[-1])
            pipe.delete(*keys)
            return sum(pipe.execute()[:-1])

        return int(self.conn.call(f"purging queue {queue!r}", purge))

    def _dead_letter(self, id: str, record: bytes) -> DeadLetter:
        queue, _key, deliveries, at, reason, raw = record.split(US.encode(), 5)
        try:
            envelope = from_kombu(raw)
        except ValueError:
            envelope = _unreadable(raw)
        return DeadLetter(
            id=id,
            queue=queue.decode(),
            reason=reason.decode(errors="replace"),
            envelope=envelope,
            failed_at=float(at),
            deliveries=int(deliveries),
            persistent=envelope.properties.get("delivery_mode", 2) != 1,
        )

    def _all_dead(self) -> list[DeadLetter]:
        def read(client: Any) -> list[tuple[str, bytes]]:
            ids = client.zrange(self._k("celeriac.dead.index"), 0, -1)
            if not ids:
                return []
            records = client.hmget(self._k("celeriac.dead"), ids)
            return [(i.decode(), r) for i, r in zip(ids, records, strict=True) if r is not None]

        return [self._dead_letter(i, r) for i, r in self.conn.call("reading dead letters", read)]

    def dead_letters(self, limit: int = 100, queue: str | None = None) -> list[DeadLetter]:
        return [d for d in self._all_dead() if queue is None or d.queue == queue][:limit]

    def dead_letter_count(self, queue: str | None = None) -> int:
        if queue is None:
            return int(
                self.conn.call("counting dead letters", lambda c: c.zcard(self._k("celeriac.dead.index")))
            )
        return len(self.dead_letters(limit=2**31, queue=queue))

    def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        if ids is not None and not ids:
            return 0
        return int(self._run("REQUEUE_DEAD", list(ids or ()), "requeueing dead letters"))

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        def purge(client: Any) -> int:
            if ids is None:
                count = client.zcard(self._k("celeriac.dead.index"))
                client.delete(self._k("celeriac.dead.index"), self._k("celeriac.dead"))
                return int(count)
            if not ids:
                return 0
            pipe = client.pipeline(transaction=True)
            pipe.hdel(self._k("celeriac.dead"), *ids)
            pipe.zrem(self._k("celeriac.dead.index"), *ids)
            return int(pipe.execute()[0])

        return self.conn.call("purging dead letters", purge)

    # -- worker heartbeats ------------------------------------------------------------------

    def put_node_stats(self, node: str, payload: bytes, ttl: float) -> None:
        expires = self.now() + ttl

        def put(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hset(self._k("celeriac.nodes"), node, payload)
            pipe.zadd(self._k("celeriac.nodes.expiry"), {node: expires})
            pipe.execute()

        self.conn.call("publishing the heartbeat", put)

    def node_stats(self) -> list[NodeStats]:
        now = self.now()

        def read(client: Any) -> list[NodeStats]:
            expiry = client.zrangebyscore(self._k("celeriac.nodes.expiry"), now, "+inf", withscores=True)
            if not expiry:
                return []
            payloads = client.hmget(self._k("celeriac.nodes"), [n for n, _ in expiry])
            return [
                NodeStats(node.decode(), payload, now, at)
                for (node, at), payload in zip(expiry, payloads, strict=True)
                if payload is not None
            ]

        return self.conn.call("reading heartbeats", read)

    def housekeeping(self) -> None:
        """Forget heartbeats that expired long ago."""
        cutoff = self.now() - 86400

        def sweep(client: Any) -> None:
            stale = client.zrangebyscore(self._k("celeriac.nodes.expiry"), "-inf", cutoff)
            if stale:
                pipe = client.pipeline(transaction=True)
                pipe.hdel(self._k("celeriac.nodes"), *stale)
                pipe.zrem(self._k("celeriac.nodes.expiry"), *stale)
                pipe.execute()

        self.conn.call("sweeping heartbeats", sweep)

    def persistence_warning(self) -> str | None:
        """A warning when this Redis keeps nothing on disk (None if it does, or cannot tell)."""
        try:
            config = self.conn.call("reading the persistence settings", lambda c: c.config_get("*"))
        except BrokerError:
            return None  # CONFIG is often disabled on managed Redis
        if config.get("appendonly") == "yes" or config.get("save"):
            return None
        return (
            f"Redis at {self.location} keeps nothing on disk (appendonly no, save ''): "
            "messages of durable queues are lost if Redis restarts; set appendonly yes"
        )

    def close(self) -> None:
        self.conn.close()
