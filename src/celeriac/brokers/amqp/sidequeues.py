"""What the RabbitMQ broker keeps in queues of its own beside the task queues.

AMQP cannot list queues, read a message without taking it, or keep a key's latest
value, so three things celeriac needs live as messages in durable queues, read
whole with ``basic.get`` on a throwaway channel and handed back (or, for what is no
longer wanted, acked) when it closes:

* ``celeriac.dead``: the dead letters (fed by the fanout exchange ``celeriac.dead``);
* ``celeriac.nodes``: worker heartbeats, one message each, with a per-message TTL;
* ``celeriac.queues``: the names of the queues celeriac declared.

:class:`SideQueues` owns these reads; the broker holds one and hands it what it uses:
the connector (for throwaway channels), the admin channel, the declarations and a way
to publish with confirms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from celeriac.brokers.amqp.connection import AdminChannel, Connector, amqp, call, drop
from celeriac.brokers.amqp.declarations import Declarations
from celeriac.brokers.amqp.wire import (
    DEAD_QUEUE,
    NODES_QUEUE,
    REGISTRY_QUEUE,
    Plan,
    counted,
    from_message,
    to_message,
)
from celeriac.brokers.base import DeadLetter, NodeStats
from celeriac.errors import QueueNotFoundError
from celeriac.protocol.message import Envelope

#: How often a worker's master compacts the queue registry and the heartbeats.
REGISTRY_COMPACT_S = 60.0


class SideQueues:
    """Dead letters, heartbeats and the queue registry of the RabbitMQ broker.

    ``send(plan, what)`` publishes messages and waits for their confirms; ``clock()`` is
    the wall-clock time of heartbeats.
    """

    def __init__(
        self,
        connector: Connector,
        admin: AdminChannel,
        declarations: Declarations,
        send: Callable[[Sequence[Plan], str], None],
        clock: Callable[[], float],
    ) -> None:
        self.connector = connector
        self.admin = admin
        self.declarations = declarations
        self.send = send
        self.clock = clock
        self._compacted = time.monotonic()
        self._nodes_declared = False

    def _read_all(self, queue: str, keep: Any) -> list[Any]:
        """basic.get every message of ``queue`` on a throwaway channel; ``keep(messages)``
        returns the delivery tags to ack, the rest go back when the channel closes."""
        connection = self.connector.connect(f"reading {queue!r}")
        try:
            channel = self.connector.channel(connection)

            def read() -> list[Any]:
                channel.queue_declare(queue, passive=True)
                got = []
                while True:
                    message = channel.basic_get(queue, no_ack=False)
                    if message is None:
                        break
                    got.append(message)
                for tag in keep(got):
                    channel.basic_ack(tag)
                return got

            try:
                return call(f"reading {queue!r}", self.connector.location, read)
            except QueueNotFoundError:
                return []
        finally:
            drop(connection)

    def queue_names(self) -> list[str]:
        registered: set[str] = set()

        def keep(messages: list[Any]) -> list[int]:
            duplicates = []
            for message in messages:
                name = bytes(message.body).decode(errors="replace")
                if name in registered:
                    duplicates.append(message.delivery_tag)
                registered.add(name)
            return duplicates  # compact the registry as we read it

        self._read_all(REGISTRY_QUEUE, keep)
        return sorted(registered | set(self.declarations.declared))

    # -- dead letters -------------------------------------------------------------------------

    @staticmethod
    def _letter(message: Any) -> DeadLetter:
        envelope, wire = from_message(message)
        headers = dict(envelope.headers)
        meta = {k: headers.pop(k) for k in list(headers) if k.startswith("x-celeriac-")}
        envelope = Envelope(
            envelope.body, envelope.content_type, envelope.content_encoding, headers, envelope.properties
        )
        return DeadLetter(
            id=str(meta.get("x-celeriac-id", "")),
            queue=str(meta.get("x-celeriac-queue", "")),
            reason=str(meta.get("x-celeriac-reason", "")),
            envelope=envelope,
            failed_at=float(meta.get("x-celeriac-failed-at", 0.0)),
            deliveries=counted(wire),
            persistent=bool(meta.get("x-celeriac-persistent", True)),
        )

    def _letters(self, keep: Any = None) -> list[tuple[Any, DeadLetter]]:
        found: list[tuple[Any, DeadLetter]] = []

        def collect(messages: list[Any]) -> list[int]:
            found.extend((m, self._letter(m)) for m in messages)
            return keep(found) if keep is not None else []

        self._read_all(DEAD_QUEUE, collect)
        return found

    def dead_letters(self, limit: int = 100, queue: str | None = None) -> list[DeadLetter]:
        letters = [letter for _, letter in self._letters() if queue is None or letter.queue == queue]
        return letters[:limit]

    def dead_letter_count(self, queue: str | None = None) -> int:
        if queue is None:
            return self.admin.counts(DEAD_QUEUE)[0]
        return len(self.dead_letters(limit=2**31, queue=queue))

    def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        wanted = None if ids is None else set(ids)

        def keep(found: list[tuple[Any, DeadLetter]]) -> list[int]:
            chosen = [(m, d) for m, d in found if wanted is None or d.id in wanted]
            plan = []
            for _, letter in chosen:
                self.declarations.ensure(letter.queue)
                exchange, routing_key = self.declarations.route(letter.queue)
                priority = int(letter.envelope.properties.get("priority") or 0)
                plan.append(
                    (to_message(letter.envelope, letter.persistent, priority), exchange, routing_key, True)
                )
            if plan:
                self.send(plan, f"requeueing {len(plan)} dead letter(s)")
            return [m.delivery_tag for m, _ in chosen]

        found = self._letters(keep)
        return sum(1 for _, d in found if wanted is None or d.id in wanted)

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        if ids is None:
            self.declarations.ensure_dead()
            return self.admin.purge(DEAD_QUEUE)
        wanted = set(ids)
        found = self._letters(lambda f: [m.delivery_tag for m, d in f if d.id in wanted])
        return sum(1 for _, d in found if d.id in wanted)

    # -- worker heartbeats --------------------------------------------------------------------

    def put_node_stats(self, node: str, payload: bytes, ttl: float) -> None:
        now = self.clock()

        def put(channel: Any) -> None:
            if not self._nodes_declared:
                channel.queue_declare(NODES_QUEUE, durable=True, auto_delete=False)
                self._nodes_declared = True
            message = amqp.Message(
                payload,
                delivery_mode=1,
                expiration=str(int(max(ttl, 1.0) * 1000)),
                application_headers={"node": node, "updated_at": now, "expires_at": now + ttl},
            )
            channel.basic_publish(message, "", NODES_QUEUE)

        self.admin.call("publishing a heartbeat", put)

    def node_stats(self) -> list[NodeStats]:
        latest: dict[str, NodeStats] = {}

        def keep(messages: list[Any]) -> list[int]:
            now = self.clock()
            stale = []
            for message in messages:
                h = message.headers or {}
                stats = NodeStats(
                    str(h.get("node", "")),
                    bytes(message.body),
                    float(h.get("updated_at", 0.0)),
                    float(h.get("expires_at", 0.0)),
                )
                previous = latest.get(stats.node)
                if previous is None or stats.updated_at >= previous.updated_at:
                    latest[stats.node] = stats
                if stats.expires_at <= now:
                    stale.append(message.delivery_tag)
            return stale

        self._read_all(NODES_QUEUE, keep)
        now = self.clock()
        return sorted((s for s in latest.values() if s.expires_at > now), key=lambda s: s.node)

    def housekeeping(self) -> None:
        """Every REGISTRY_COMPACT_S, drop repeated names from ``celeriac.queues`` (each
        process that declares a queue adds its name once) and expired heartbeats."""
        now = time.monotonic()
        if now - self._compacted < REGISTRY_COMPACT_S:
            return
        self._compacted = now
        self.queue_names()
        self.node_stats()
