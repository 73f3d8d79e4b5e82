"""An in-process broker (``memory://``) for tests: the full contract, no persistence.

Every ``MemoryBroker`` object is its own broker; threads of one process may
share it. It keeps the same delivery rules as the real brokers (leases, delivery
limit, dead letters, ETAs), so tests written against it mean something.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from celeriac.brokers.base import (
    ACK,
    DEAD,
    QUEUE,
    Broker,
    BrokerOptions,
    DeadLetter,
    Delivery,
    NodeStats,
    Outgoing,
    QueueLength,
)
from celeriac.protocol.entities import Queue


@dataclass(slots=True)
class _Stored:
    seq: int
    queue: str
    outgoing: Outgoing
    deliveries: int = 0
    owner: str | None = None
    lease_until: float = 0.0
    started: bool = False


class MemoryBroker(Broker):
    """Thread-safe in-memory broker."""

    scheme = "memory"

    def __init__(self, url: str = "memory://", options: BrokerOptions | None = None) -> None:
        super().__init__(url, options)
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._declared: dict[str, Queue] = {}
        self._messages: dict[int, _Stored] = {}
        self._dead: dict[int, DeadLetter] = {}
        #: poison messages the fetches dead-lettered, until fetched_dead_letters()
        self._fetch_dead: list[DeadLetter] = []
        self._nodes: dict[str, NodeStats] = {}

    def declare_queue(self, queue: Queue) -> None:
        with self._cond:
            self._declared[queue.name] = queue

    def _publish(self, batch: Sequence[Outgoing]) -> None:
        with self._cond:
            for item in batch:
                seq = next(self._seq)
                self._messages[seq] = _Stored(seq, item.queue, item)
            self._cond.notify_all()

    # -- consumer side ----------------------------------------------------------------------

    def _reclaim(self, now: float) -> None:
        for stored in self._messages.values():
            if stored.owner is not None and not stored.started and stored.lease_until < now:
                stored.owner = None

    def _ready(self, queues: Sequence[str], now: float) -> list[_Stored]:
        wanted = set(queues)
        return [
            s
            for s in self._messages.values()
            if s.owner is None and not s.started and s.queue in wanted and (s.outgoing.eta or 0) <= now
        ]

    def _lease(self, queues: Sequence[str], n: int, consumer: str) -> list[Delivery]:
        now = self.now()
        self._reclaim(now)
        picked = heapq.nsmallest(n, self._ready(queues, now), key=lambda s: (-s.outgoing.priority, s.seq))
        out: list[Delivery] = []
        for stored in picked:
            if stored.deliveries >= self.options.delivery_limit:
                reason = f"delivered {stored.deliveries} times without being settled"
                self._fetch_dead.append(self._to_dead(stored, reason))
                continue
            stored.deliveries += 1
            stored.owner = consumer
            stored.lease_until = now + self.options.lease_seconds
            out.append(
                Delivery(
                    stored.queue,
                    stored.outgoing.envelope,
                    f"m:{stored.seq}",
                    stored.deliveries,
                    stored.outgoing.persistent,
                    consumer,
                )
            )
        return out

    def _next_due(self, queues: Sequence[str]) -> float | None:
        wanted = set(queues)
        times = [
            s.outgoing.eta or 0 for s in self._messages.values() if s.queue in wanted and s.owner is None
        ]
        times += [s.lease_until for s in self._messages.values() if s.queue in wanted and s.owner is not None]
        return min(times) if times else None

    def _fetch(
        self, queues: Sequence[str], n: int, timeout: float, consumer: str, ack: Sequence[Delivery]
    ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self._cond:
            for delivery in ack:
                self._messages.pop(self._seq_of(delivery.tag), None)
            while True:
                got = self._lease(queues, n, consumer)
                if got:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                due = self._next_due(queues)
                if due is not None:
                    remaining = min(remaining, max(0.001, due - self.now()))
                self._cond.wait(remaining)

    @staticmethod
    def _seq_of(tag: str) -> int:
        return int(tag[2:])

    def _mark_started(self, batch: Sequence[Delivery]) -> list[Delivery]:
        lost: list[Delivery] = []
        with self._cond:
            now = self.now()
            for delivery in batch:
                stored = self._messages.get(self._seq_of(delivery.tag))
                if stored is None or stored.owner != delivery.consumer or stored.lease_until <= now:
                    lost.append(delivery)
                    if stored is not None and stored.owner == delivery.consumer and not stored.started:
                        stored.owner = None  # a lease that ran out, not yet taken over: back now
                else:
                    stored.started = True
            if lost:
                self._cond.notify_all()
        return lost

    def _ack(self, batch: Sequence[Delivery]) -> None:
        with self._cond:
            for delivery in batch:
                self._messages.pop(self._seq_of(delivery.tag), None)

    def fetched_dead_letters(self) -> list[DeadLetter]:
        with self._cond:
            found, self._fetch_dead = self._fetch_dead, []
        return found

    def _to_dead(self, stored: _Stored, reason: str) -> DeadLetter:
        self._messages.pop(stored.seq, None)
        letter = self._dead[stored.seq] = DeadLetter(
            id=str(stored.seq),
            queue=stored.queue,
            reason=reason,
            envelope=stored.outgoing.envelope,
            failed_at=self.now(),
            deliveries=stored.deliveries,
            persistent=stored.outgoing.persistent,
        )
        return letter

    def _release(self, stored: _Stored, started: bool) -> None:
        stored.owner = None
        stored.started = False
        stored.lease_until = 0.0
        if not started:
            stored.deliveries = max(0, stored.deliveries - 1)

    def _reject(self, batch: Sequence[Delivery], requeue: bool, reason: str) -> None:
        with self._cond:
            for delivery in batch:
                stored = self._messages.get(self._seq_of(delivery.tag))
                if stored is None:
                    continue
                if requeue:
                    self._release(stored, started=True)  # it ran: the delivery counts
                else:
                    self._to_dead(stored, reason)
            self._cond.notify_all()

    def _hand_back(self, batch: Sequence[Delivery]) -> None:
        with self._cond:
            for delivery in batch:
                stored = self._messages.get(self._seq_of(delivery.tag))
                if stored is not None and not stored.started:
                    self._release(stored, started=False)
            self._cond.notify_all()

    def extend_leases(self, consumers: Sequence[str]) -> int:
        owners = set(consumers)
        until = self.now() + self.options.lease_seconds
        count = 0
        with self._cond:
            for stored in self._messages.values():
                if stored.owner in owners:
                    stored.lease_until = until
                    count += 1
        return count

    def consumer_lost(
        self,
        consumer: str,
        running: Sequence[str],
        reason: str,
        running_to: str = QUEUE,
        count_unstarted: bool = False,
    ) -> list[str]:
        started = {self._seq_of(tag) for tag in running}
        dead: list[str] = []
        with self._cond:
            for stored in [s for s in self._messages.values() if s.owner == consumer]:
                was_running = stored.seq in started
                if stored.started and not was_running:
                    self._messages.pop(stored.seq, None)  # it ran; its ack was lost with the consumer
                elif was_running and running_to == ACK:
                    self._messages.pop(stored.seq, None)
                elif was_running and (running_to == DEAD or stored.deliveries >= self.options.delivery_limit):
                    suffix = "" if running_to == DEAD else f" (delivered {stored.deliveries} times)"
                    self._to_dead(stored, reason + suffix)
                    dead.append(f"m:{stored.seq}")
                else:
                    self._release(stored, started=was_running or count_unstarted)
            self._cond.notify_all()
        return dead

    def recover_lost(self, reason: str) -> list[DeadLetter]:
        now = self.now()
        with self._cond:
            lost = [s for s in self._messages.values() if s.started and s.lease_until < now]
            for stored in lost:
                self._to_dead(stored, reason)
            return [self._dead[s.seq] for s in lost]

    # -- inspection -------------------------------------------------------------------------

    def queue_length(self, queue: str) -> QueueLength:
        now = self.now()
        ready = scheduled = reserved = running = 0
        with self._cond:
            for s in self._messages.values():
                if s.queue != queue:
                    continue
                if s.started:
                    running += 1
                elif s.owner is not None:
                    reserved += 1
                elif (s.outgoing.eta or 0) > now:
                    scheduled += 1
                else:
                    ready += 1
        return QueueLength(queue, ready, scheduled, reserved, running)

    def queue_names(self) -> list[str]:
        with self._cond:
            return sorted(set(self._declared) | {s.queue for s in self._messages.values()})

    def purge(self, queue: str) -> int:
        with self._cond:
            doomed = [k for k, s in self._messages.items() if s.queue == queue and s.owner is None]
            for key in doomed:
                del self._messages[key]
        return len(doomed)

    def _dead_items(self, queue: str | None) -> list[DeadLetter]:
        return [d for d in self._dead.values() if queue is None or d.queue == queue]

    def dead_letters(self, limit: int = 100, queue: str | None = None) -> list[DeadLetter]:
        with self._cond:
            return self._dead_items(queue)[:limit]

    def dead_letter_count(self, queue: str | None = None) -> int:
        with self._cond:
            return len(self._dead_items(queue))

    def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        with self._cond:
            keys = [k for k in self._dead if ids is None or str(k) in ids]
            for key in keys:
                dead = self._dead.pop(key)
                outgoing = Outgoing(dead.queue, dead.envelope, dead.persistent)
                self._messages[key] = _Stored(key, dead.queue, outgoing)
            self._cond.notify_all()
        return len(keys)

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        with self._cond:
            keys = [k for k in self._dead if ids is None or str(k) in ids]
            for key in keys:
                del self._dead[key]
        return len(keys)

    def put_node_stats(self, node: str, payload: bytes, ttl: float) -> None:
        now = self.now()
        with self._cond:
            self._nodes[node] = NodeStats(node, payload, now, now + ttl)

    def node_stats(self) -> list[NodeStats]:
        now = self.now()
        with self._cond:
            return [s for s in self._nodes.values() if s.expires_at > now]
