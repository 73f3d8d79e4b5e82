"""The broker interface: every broker is bytes, framing and delivery bookkeeping.

A broker stores :class:`~celeriac.protocol.Envelope` objects in named queues and
hands them out with an ack token. It never decodes a body: task semantics live in
:mod:`celeriac.protocol`, so one contract suite covers every broker.

Delivery model
--------------
``fetch`` leases up to *n* messages to a consumer (one child process). A leased
message is invisible to other consumers until it is acked (removed), rejected
(dead-lettered or requeued), released by ``consumer_lost`` or its lease runs out
(the node holding it died). A live worker keeps its leases fresh with
``extend_leases``, so a long task is never handed to a second consumer.

Early ack (at most once) marks a message *started* just before its task runs
(``mark_started``): from then on it is never delivered again. The mark is set only
while the delivery's consumer still holds its lease, in the same atomic step: a
node that stalled past its lease (a paused container, a frozen VM) may find that
another node took the message over, and then drops it without running it. It stays stored,
as running, until the child acks it with its window; if the whole node dies
first, ``recover_lost`` (called by live masters) moves it to the dead letters
with the reason, so a task lost with its node is recorded, never silently gone.

Every delivery counts towards ``delivery_limit``: a message fetched that many
times without being settled (its consumers kept dying on it) goes to the dead
letters instead of being delivered again, so a poison message cannot crash-loop a
worker.

Two ways back to the queue
--------------------------
A message goes back to its queue unsettled in one of two ways, and they must not
be confused:

* ``reject(requeue=True)``: its task *ran* and asked to run again later (Celery's
  ``Reject(requeue=True)``). The next delivery is a redelivery: ``deliveries`` is one
  more, so the worker sets ``delivery_info['redelivered']``, and it counts towards
  ``delivery_limit``. A delivery that already was the ``delivery_limit``-th goes to
  the dead letters instead (:meth:`Broker.requeue_refusal` says why), so a task that
  requeues itself forever runs ``delivery_limit`` times, not without end.
* ``hand_back``: the consumer never started it (a stopping child's prefetched
  messages). Not a delivery: its count and ``redelivered`` stay as they were, so
  restarting workers never pushes innocent messages towards the dead letters.

Messages with an ETA are *scheduled*: invisible and never leased until due.

Method summary (all batch-shaped; one broker round trip each):

=====================  ===============================================================
``declare_queue``      make sure a queue exists (idempotent)
``publish``            store a batch of outgoing messages atomically
``fetch``              lease up to n ready messages from some queues, waiting up to timeout
``mark_started``       early ack: the task starts now (if its lease is still held); never deliver it again
``ack``                remove settled deliveries
``reject``             dead-letter deliveries with a reason, or requeue them: their task asked to run
                       again (a redelivery: counted, ``redelivered``, bounded by ``delivery_limit``)
``hand_back``          give back deliveries never started (not a delivery: uncounted, not redelivered)
``extend_leases``      push back the lease deadline of everything some consumers hold
``consumer_lost``      a consumer died: release its deliveries at once
``recover_lost``       dead-letter started messages whose node died (lease expired)
``queue_length``       ready / scheduled / reserved / running counts of one queue
``purge``              delete the ready and scheduled messages of a queue
``dead_letters`` ...   list, count, requeue and purge the dead-letter store
``put_node_stats``     store a worker node's heartbeat; ``node_stats`` reads them
``housekeeping``       periodic maintenance by a worker's master (may do nothing)
=====================  ===============================================================
"""

from __future__ import annotations

import abc
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from celeriac.errors import BrokerConnectionError, ConfigurationError
from celeriac.protocol.entities import Queue
from celeriac.protocol.message import Envelope

#: Default number of deliveries after which an unsettled message is dead-lettered.
DEFAULT_DELIVERY_LIMIT = 5
#: Default lease length in seconds; live workers extend leases well before they run out.
DEFAULT_LEASE_SECONDS = 30.0

#: Celery's default ``task_publish_retry_policy``.
DEFAULT_PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

logger = logging.getLogger("celeriac.broker")

T = TypeVar("T")


def publish_with_retry(options: BrokerOptions, what: str, attempt: Callable[[], T]) -> T:
    """Run ``attempt``; on a lost connection (:class:`~celeriac.errors.BrokerConnectionError`),
    retry per ``task_publish_retry_policy``."""
    policy = {**DEFAULT_PUBLISH_RETRY_POLICY, **options.publish_retry_policy}
    retries = int(policy["max_retries"]) if options.publish_retry else 0
    interval = float(policy["interval_start"])
    for tried in itertools.count():
        try:
            return attempt()
        except BrokerConnectionError as exc:
            if tried >= retries:
                raise
            logger.warning("%s: %s; retrying in %.1f s (%d/%d)", what, exc, interval, tried + 1, retries)
            time.sleep(interval)
            interval = min(interval + policy["interval_step"], policy["interval_max"])
    raise AssertionError("unreachable")  # pragma: no cover


def mask_password(url: str) -> str:
    """The URL without its password, for logs and errors; each part of a ``;`` list of
    URLs (Redis Sentinel's form) is masked."""
    if ";" in url:
        return ";".join(mask_password(part) for part in url.split(";"))
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed '[': still no password in the log
        return _mask_unparsed(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def _mask_unparsed(url: str) -> str:
    """Mask what stands between ``:`` and ``@`` in a URL that does not parse."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    if ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


#: Where ``consumer_lost`` sends the messages the lost consumer had started.
QUEUE, ACK, DEAD = "queue", "ack", "dead"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish: where it goes, whether it must survive a restart, when it is due."""

    queue: str
    envelope: Envelope
    persistent: bool = True
    eta: float | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Delivery:
    """A leased message. ``tag`` is the opaque token for ack/reject (at most 64 bytes)."""

    queue: str
    envelope: Envelope
    tag: str
    deliveries: int
    persistent: bool = True
    #: the consumer ``fetch`` leased it to: ``mark_started`` checks that it still holds the lease
    consumer: str = ""


@dataclass(frozen=True, slots=True)
class QueueLength:
    """What a queue holds: ready, waiting for an ETA, leased (prefetched or running with
    late ack) and running (started with early ack, not yet acked)."""

    queue: str
    ready: int
    scheduled: int
    reserved: int
    running: int = 0
    #: seconds the oldest ready message has waited (from its publish time or due ETA);
    #: None where the broker cannot tell without taking the message
    oldest_age: float | None = None
    #: consumers the broker itself counts, of any client (RabbitMQ); None where it keeps no count
    consumers: int | None = None

    @property
    def total(self) -> int:
        """Every message not yet acked."""
        return self.ready + self.scheduled + self.reserved + self.running


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the workers could not run, with the reason."""

    id: str
    queue: str
    reason: str
    envelope: Envelope
    failed_at: float
    deliveries: int
    persistent: bool = True


@dataclass(frozen=True, slots=True)
class NodeStats:
    """A worker node's last heartbeat: an encoded stats document and when it was written."""

    node: str
    payload: bytes
    updated_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class PoolStats:
    """What a producer's connection pool did: for the monitor and ``inspect``."""

    limit: int | None
    in_use: int
    created: int
    acquired: int
    waits: int
    wait_total_s: float
    wait_max_s: float
    timeouts: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """Delivery settings every broker honours, and connection settings of networked ones."""

    lease_seconds: float = DEFAULT_LEASE_SECONDS
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    transport_options: dict[str, object] = field(default_factory=dict)
    #: most connections a process keeps (``broker_pool_limit``; None: no limit)
    pool_limit: int | None = 10
    #: how long a caller waits for a pooled connection (``broker_pool_timeout``)
    pool_timeout: float = 10.0
    #: how long connecting may take (``broker_connection_timeout``)
    connect_timeout: float = 4.0
    #: retry publishing on a lost connection (``task_publish_retry``) and how
    publish_retry: bool = True
    publish_retry_policy: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PUBLISH_RETRY_POLICY))


class Broker(abc.ABC):
    """A message broker. Subclasses implement the ``_`` methods; this class keeps invariants."""

    scheme: str = ""
    #: True where the broker itself hands back every unacked delivery of a consumer whose
    #: connection died (RabbitMQ): ``consumer_lost`` in another process cannot ack or
    #: dead-letter them, so a late-ack task of a killed child always runs again.
    requeues_dead_consumers: bool = False

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        self.url = url
        self.options = options or BrokerOptions()

    def transport_options(self, accepted: frozenset[str], broker: str) -> dict[str, Any]:
        """``broker_transport_options``, refused with the accepted names if one is unknown."""
        transport = dict(self.options.transport_options)
        unknown = sorted(set(transport) - accepted)
        if unknown:
            raise ConfigurationError(
                f"broker_transport_options: {', '.join(map(repr, unknown))} not known to the {broker} "
                f"broker; it takes {', '.join(sorted(accepted))}"
            )
        return transport

    # -- declarations -----------------------------------------------------------------------

    @abc.abstractmethod
    def declare_queue(self, queue: Queue) -> None:
        """Create ``queue`` if it does not exist; remember whether it is durable."""

    # -- producer side ----------------------------------------------------------------------

    def publish(self, batch: Sequence[Outgoing]) -> None:
        """Store every message of ``batch`` in one atomic operation.

        When this returns, persistent messages on durable queues are on stable
        storage; transient ones are in the broker's memory or an unsynced file.
        """
        if batch:
            self._publish(batch)

    @abc.abstractmethod
    def _publish(self, batch: Sequence[Outgoing]) -> None: ...

    # -- consumer side ----------------------------------------------------------------------

    def fetch(
        self, queues: Sequence[str], n: int, timeout: float, consumer: str, ack: Sequence[Delivery] = ()
    ) -> list[Delivery]:
        """Lease up to ``n`` ready messages from ``queues`` to ``consumer``.

        ``ack`` are settled deliveries to ack in the same round trip, before
        leasing: a child settles one window and fetches the next at once. Returns
        as soon as at least one message is leased, or an empty list after
        ``timeout`` seconds (0 = do not wait). Higher priority first, then FIFO.
        """
        if n < 1 or not queues:
            self.ack(ack)
            return []
        return self._fetch(queues, n, max(0.0, timeout), consumer, ack)

    @abc.abstractmethod
    def _fetch(
        self, queues: Sequence[str], n: int, timeout: float, consumer: str, ack: Sequence[Delivery]
    ) -> list[Delivery]: ...

    def mark_started(self, batch: Sequence[Delivery]) -> list[Delivery]:
        """Early ack: these tasks start now; never deliver them again, even if their node dies.

        Only a delivery whose consumer still holds its lease is marked, checked in the
        same atomic step that marks it. Returns the others, whose lease was lost: it ran
        out, and another consumer may have taken the message over or will. They are not
        marked, and their consumer must drop them unrun, with neither ack nor reject:
        they are no longer its to settle. A broker error raises, as anywhere.
        """
        if not batch:
            return []
        return self._mark_started(batch)

    @abc.abstractmethod
    def _mark_started(self, batch: Sequence[Delivery]) -> list[Delivery]: ...

    def ack(self, batch: Sequence[Delivery]) -> None:
        """Remove settled deliveries. Acking a message twice is harmless."""
        if batch:
            self._ack(batch)

    @abc.abstractmethod
    def _ack(self, batch: Sequence[Delivery]) -> None: ...

    def reject(self, batch: Sequence[Delivery], requeue: bool, reason: str = "") -> None:
        """Dead-letter ``batch`` with ``reason`` or, with ``requeue``, deliver it again later.

        ``requeue`` is for messages whose task ran and asked to run again: their next
        delivery is a redelivery (``deliveries`` one more) and counts towards
        ``delivery_limit``; one that reached the limit goes to the dead letters instead,
        with the reason :meth:`requeue_refusal` gives. A requeued message keeps its place
        in the queue where the broker can put it back there (RabbitMQ: at the back).
        Messages never started go back with :meth:`hand_back`.
        """
        if not batch:
            return
        if not requeue:
            if not reason:
                raise ValueError("dead-lettering needs a reason")
            self._reject(batch, False, reason)
            return
        again = []
        for delivery in batch:
            refusal = self.requeue_refusal(delivery)
            if refusal is None:
                again.append(delivery)
            else:
                self._reject([delivery], False, refusal)
        if again:
            self._reject(again, True, "")

    @abc.abstractmethod
    def _reject(self, batch: Sequence[Delivery], requeue: bool, reason: str) -> None:
        """Dead-letter ``batch`` with ``reason``, or (``requeue``) put it back counted: the
        next delivery of each message is its ``deliveries + 1``-th."""

    def requeue_refusal(self, delivery: Delivery) -> str | None:
        """Why ``reject(requeue=True)`` dead-letters ``delivery`` instead of requeueing it
        (None: it is requeued): it was the ``delivery_limit``-th delivery already."""
        limit = self.options.delivery_limit
        if delivery.deliveries < limit:
            return None
        return (
            f"requeued {delivery.deliveries} times by its task (Reject(requeue=True)) without being "
            f"settled: task_delivery_limit={limit} reached, not delivered again; reject without "
            "requeue once delivery_info['redelivered'] is set, or set a higher task_delivery_limit"
        )

    def hand_back(self, batch: Sequence[Delivery]) -> None:
        """Give back deliveries whose consumer never started them (a stopping child's
        prefetched messages). Not a delivery: each message keeps its place in the queue where
        the broker can put it back there, and its delivery count, so its next delivery is
        not ``redelivered`` unless an earlier one was."""
        if batch:
            self._hand_back(batch)

    @abc.abstractmethod
    def _hand_back(self, batch: Sequence[Delivery]) -> None: ...

    @abc.abstractmethod
    def extend_leases(self, consumers: Sequence[str]) -> int:
        """Renew for ``lease_seconds`` every lease held by ``consumers``; return how many."""

    @abc.abstractmethod
    def consumer_lost(
        self,
        consumer: str,
        running: Sequence[str],
        reason: str,
        running_to: str = QUEUE,
        count_unstarted: bool = False,
    ) -> list[str]:
        """Release everything ``consumer`` holds, now.

        Messages the consumer never started go back as if requeued (with
        ``count_unstarted``, their delivery counts: the consumer died before
        starting any task, perhaps on one of them); messages it
        marked started and that are not ``running`` finished and are removed.
        ``running`` are tags of messages it was running; ``running_to`` says where
        they go:

        * ``QUEUE``: delivered again; this counts as a failed delivery and at
          ``delivery_limit`` the message goes to the dead letters with ``reason``;
        * ``ACK``: removed (the task was settled as failed);
        * ``DEAD``: to the dead letters with ``reason``.

        Returns the tags that were dead-lettered.
        """

    @abc.abstractmethod
    def recover_lost(self, reason: str) -> list[DeadLetter]:
        """Dead-letter started messages whose lease ran out (their node died); return them."""

    # -- inspection -------------------------------------------------------------------------

    @abc.abstractmethod
    def queue_length(self, queue: str) -> QueueLength:
        """Count the messages of ``queue`` (cheap: one round trip)."""

    def queue_lengths(self, queues: Sequence[str]) -> list[QueueLength]:
        """Count several queues, in the order given (one round trip where the broker allows)."""
        return [self.queue_length(queue) for queue in queues]

    @abc.abstractmethod
    def queue_names(self) -> list[str]:
        """Every queue the broker knows: declared, or holding messages."""

    @abc.abstractmethod
    def purge(self, queue: str) -> int:
        """Delete the ready and scheduled messages of ``queue``; return how many."""

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100, queue: str | None = None) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters (of one queue, if given)."""

    @abc.abstractmethod
    def dead_letter_count(self, queue: str | None = None) -> int:
        """How many messages are in the dead-letter store."""

    @abc.abstractmethod
    def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters back on their queues (all when ``ids`` is None); return how many."""

    @abc.abstractmethod
    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all when ``ids`` is None); return how many."""

    # -- worker heartbeats ------------------------------------------------------------------

    @abc.abstractmethod
    def put_node_stats(self, node: str, payload: bytes, ttl: float) -> None:
        """Store a worker node's heartbeat; it is forgotten ``ttl`` seconds later."""

    @abc.abstractmethod
    def node_stats(self) -> list[NodeStats]:
        """Heartbeats of the worker nodes that are alive."""

    @property
    def location(self) -> str:
        """Where the messages are, for logs: the URL, with relative paths resolved."""
        return self.url

    def housekeeping(self) -> None:
        """Maintenance a worker node's master runs every fraction of a second, off the
        children's hot path (SQLite: checkpoint the write-ahead log)."""

    def close(self) -> None:
        """Release connections. The broker must not be used afterwards."""

    def fetched_dead_letters(self) -> list[DeadLetter]:
        """Messages this process's fetches moved to the dead letters on their own since the last
        call (a message past ``delivery_limit`` found while fetching), so the worker can log
        them and record their results. Brokers that settle such messages elsewhere return []."""
        return []

    def still_held(self, batch: Sequence[Delivery]) -> list[Delivery]:
        """The deliveries of ``batch`` this process may still run and settle. Where a lost
        connection hands a consumer's messages back (RabbitMQ), the ones it delivered are
        dropped: they are in their queue again."""
        return list(batch)

    def pool_stats(self) -> PoolStats | None:
        """Connection pool counters of this process (networked brokers), else None."""
        return None

    def persistence_warning(self) -> str | None:
        """Why durable messages might not survive a broker restart, if the broker can tell."""
        return None

    # -- helpers for subclasses -------------------------------------------------------------

    @staticmethod
    def now() -> float:
        """Wall-clock time used for ETAs and leases (POSIX seconds)."""
        return time.time()
