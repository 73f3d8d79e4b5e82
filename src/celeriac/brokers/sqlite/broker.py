"""The embedded broker: queues in SQLite files shared by the processes of one machine.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

Two stores
----------
durable (the file named in the URL)
    Persistent messages (``delivery_mode=2``) on durable queues. WAL journal.
    A publish is committed with ``synchronous=FULL``: when ``apply_async``
    returns, the message is on disk and survives a kill -9 of every process and
    a power loss. Deliveries, acks and dead-lettering are committed with
    ``synchronous=NORMAL``: they survive any process crash; a power loss may
    undo the last few of them, which can only make a task run again, never lose
    one. ``broker_transport_options={'fsync': 'all'}`` fsyncs those too.
transient (``<file>.transient-<boot id>``, next to it)
    Messages on queues declared ``durable=False`` and messages sent with
    ``delivery_mode=1``. ``synchronous=OFF``: no fsync is ever paid. They
    survive process crashes (the data is in the OS page cache) but not a reboot:
    the file name carries the kernel's boot id, and files of earlier boots are
    deleted when the broker opens. Leases, acks and redelivery work exactly as
    for durable messages.

Schema (both stores)
--------------------
``messages``
    ``id`` (AUTOINCREMENT, so ids are never reused and order is FIFO),
    ``queue``, ``state`` (0 ready, 1 scheduled until ``eta``, 2 leased to
    ``owner`` until ``lease_until``, 3 started with early ack: running, never
    delivered again), ``priority`` (higher first),
    ``deliveries`` (times leased without being settled, a task's requeue included; a
    hand-back of a message never started takes its lease back off), ``published_at``,
    ``meta`` (JSON: headers, properties, content type and encoding), ``body``.
``dead_letters``
    the same message columns plus ``reason`` and ``failed_at``.
``queues`` (durable store)
    declared queues and whether they are durable.
``nodes`` (durable store)
    worker heartbeats: node name, payload, ``updated_at``, ``expires_at``.

Lease rules
-----------
* ``fetch`` leases up to *n* ready messages in one ``BEGIN IMMEDIATE``
  transaction, after moving due scheduled messages to ready and taking back
  expired leases (a node that died). Rows leased ``delivery_limit`` times
  already go to ``dead_letters`` instead, and so do rows whose envelope cannot be
  read (written by another program, or a damaged file), with what is wrong.
* A live worker's master renews its children's leases (``extend_leases``) every
  third of the lease; when it sees a child die it releases that child's leases at
  once (``consumer_lost``).
* Early ack sets state 3 (``mark_started``) only where ``owner`` is still the
  consumer and ``lease_until`` has not passed, in the same statement; a row that
  does not qualify is reported lost and its consumer drops it (a lost lease nobody
  took over yet goes back to ready at once). The row is deleted
  with the child's next batch of acks. A state-3 row whose lease expired belonged to a node that
  died mid-task: ``recover_lost`` moves it to ``dead_letters`` with the reason.
* An idle consumer polls ``PRAGMA data_version`` (a counter SQLite bumps when
  another connection commits) every few milliseconds and queries only when it
  moved, when a scheduled message falls due or when a lease expires.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

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
from celeriac.brokers.sqlite.envelope import UNREADABLE, for_listing, from_row, to_meta, unreadable_reason
from celeriac.brokers.sqlite.file import SQLiteFile, Sync, path_from_url, placeholders
from celeriac.brokers.sqlite.stores import Store
from celeriac.errors import ConfigurationError
from celeriac.protocol.entities import Queue

SCHEMA_VERSION = 2

#: Values of ``messages.state`` a publish writes (the others, 2 leased and 3 started,
#: are set by the statements below).
READY, SCHEDULED = 0, 1

_MESSAGE_COLUMNS = """
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0,
    published_at REAL NOT NULL,
    meta BLOB NOT NULL,
    body BLOB NOT NULL
"""

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        state INTEGER NOT NULL,
        eta REAL,
        owner TEXT,
        lease_until REAL,
        {_MESSAGE_COLUMNS})""",
    "CREATE INDEX IF NOT EXISTS messages_ready ON messages(queue, priority DESC, id) WHERE state = 0",
    "CREATE INDEX IF NOT EXISTS messages_scheduled ON messages(eta) WHERE state = 1",
    "CREATE INDEX IF NOT EXISTS messages_lease ON messages(lease_until) WHERE lease_until IS NOT NULL",
    f"""CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        reason TEXT NOT NULL,
        failed_at REAL NOT NULL,
        {_MESSAGE_COLUMNS})""",
    """CREATE TABLE IF NOT EXISTS queues (
        name TEXT PRIMARY KEY,
        durable INTEGER NOT NULL,
        declared_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS nodes (
        node TEXT PRIMARY KEY,
        payload BLOB NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL NOT NULL)""",
)

#: How often an idle consumer looks for a change (seconds).
POLL_INTERVAL = 0.005
#: An idle consumer queries at least this often, whatever data_version says.
MAX_IDLE_QUERY_INTERVAL = 1.0


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip().replace("-", "")[:12]
    except OSError:
        return "static"


#: Statements of ``_ready_counts``, each a search of the index of ready messages.
_COUNT_READY = "SELECT COUNT(*) FROM messages INDEXED BY messages_ready WHERE state=0 AND queue=?"
_NEXT_PRIORITY = (
    "SELECT priority FROM messages INDEXED BY messages_ready WHERE state=0 AND queue=? AND priority<? "
    "ORDER BY priority DESC LIMIT 1"
)
_FIRST_READY = (
    "SELECT MIN(id) FROM messages INDEXED BY messages_ready WHERE state=0 AND queue=? AND priority=?"
)


class SQLiteBroker(Broker):
    """Queues in a SQLite database file (durable) and a companion file (transient)."""

    scheme = "sqlite"

    def __init__(self, url: str, options: BrokerOptions | None = None) -> None:
        super().__init__(url, options)
        path, query = path_from_url(url)
        transport = {**query, **self.options.transport_options}
        fsync = str(transport.get("fsync", "publish"))
        if fsync not in ("publish", "all"):
            raise ConfigurationError(
                f"broker_transport_options fsync={fsync!r}: use 'publish' (fsync each publish, "
                "the default) or 'all' (fsync deliveries and acks too)"
            )
        busy = float(str(transport.get("busy_timeout", 30.0)))
        consumer_sync: Sync = "FULL" if fsync == "all" else "NORMAL"
        self.path = os.path.abspath(path)
        self.transient_path = f"{self.path}.transient-{_boot_id()}"
        #: poison messages this process's fetches dead-lettered, until fetched_dead_letters()
        self._fetch_dead: list[DeadLetter] = []
        self._durable = Store(
            "d:",
            SQLiteFile(self.path, "broker", SCHEMA, SCHEMA_VERSION, consumer_sync, busy),
            True,
            "FULL",
            "FULL",
        )
        self._transient = Store(
            "t:",
            SQLiteFile(self.transient_path, "broker", SCHEMA, SCHEMA_VERSION, "OFF", busy),
            False,
            "OFF",
            "OFF",
        )
        self._stores = {"d:": self._durable, "t:": self._transient}
        self._durable_queues: dict[str, bool] = {}
        self._turn = 0
        self._removed_stale = False

    # -- helpers ----------------------------------------------------------------------------

    def _remove_stale_transient(self) -> None:
        """Delete transient files of earlier boots: their messages did not survive the reboot."""
        if self._removed_stale:
            return
        self._removed_stale = True
        for stale in glob.glob(glob.escape(self.path) + ".transient-*"):
            if stale.startswith(self.transient_path):
                continue
            with contextlib.suppress(OSError):
                os.remove(stale)

    def _stores_for(self) -> list[Store]:
        """Both stores, in turns, so neither starves the other.

        A durable queue can hold transient messages (``delivery_mode=1``), and a
        producer that does not know a queue's declaration sends persistent
        messages to the durable store, so both are always consulted.
        """
        self._turn ^= 1
        return [self._transient, self._durable] if self._turn else [self._durable, self._transient]

    def _group(self, batch: Iterable[Delivery]) -> dict[str, list[int]]:
        """Row ids of ``batch`` by store prefix."""
        return self._group_tags(delivery.tag for delivery in batch)

    def _group_tags(self, tags: Iterable[str]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for tag in tags:
            groups.setdefault(tag[:2], []).append(int(tag[2:]))
        return groups

    # -- declarations -----------------------------------------------------------------------

    def _is_durable(self, queue: str) -> bool:
        """Whether ``queue`` was declared durable (undeclared queues are durable)."""
        durable = self._durable_queues.get(queue)
        if durable is None:
            rows = self._durable.db.read("SELECT durable FROM queues WHERE name=?", (queue,))
            durable = bool(rows[0][0]) if rows else True
            self._durable_queues[queue] = durable
        return durable

    def declare_queue(self, queue: Queue) -> None:
        self._durable_queues[queue.name] = queue.durable
        self._remove_stale_transient()
        self._durable.db.write(
            lambda conn: conn.execute(
                "INSERT INTO queues(name, durable, declared_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET durable=excluded.durable",
                (queue.name, int(queue.durable), self.now()),
            )
        )

    # -- producer side ----------------------------------------------------------------------

    def _publish(self, batch: Sequence[Outgoing]) -> None:
        now = self.now()
        rows: dict[str, list[tuple[Any, ...]]] = {"d:": [], "t:": []}
        for item in batch:
            durable = item.persistent and self._is_durable(item.queue)
            scheduled = item.eta is not None and item.eta > now
            rows["d:" if durable else "t:"].append(
                (
                    item.queue,
                    SCHEDULED if scheduled else READY,
                    item.eta if scheduled else None,
                    item.priority,
                    now,
                    to_meta(item.envelope),
                    item.envelope.body,
                )
            )
        for prefix, values in rows.items():
            if values:
                store = self._stores[prefix]
                store.db.write(
                    lambda conn, values=values: conn.executemany(
                        "INSERT INTO messages (queue, state, eta, priority, published_at, meta, body) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        values,
                    ),
                    sync=store.publish_sync,
                    publishing=True,
                )

    # -- consumer side ----------------------------------------------------------------------

    def _lease_from(
        self, store: Store, queues: Sequence[str], n: int, consumer: str, ack: Sequence[int] = ()
    ) -> list[Delivery]:
        """Delete the ``ack`` ids and lease up to ``n`` messages of ``store``, in one transaction."""
        rows = self._lease_rows(store, queues, n, consumer, ack)
        try:
            return [
                Delivery(
                    queue, from_row(meta, body), store.tag(row_id), deliveries, store.persistent, consumer
                )
                for row_id, queue, _priority, deliveries, meta, body in rows
            ]
        except UNREADABLE:
            return self._lease_past_unreadable(store, queues, n, consumer, rows)

    def _lease_rows(
        self, store: Store, queues: Sequence[str], n: int, consumer: str, ack: Sequence[int] = ()
    ) -> list[tuple[Any, ...]]:
        """One transaction on ``store``: delete the ``ack`` ids, then lease up to ``n`` rows."""
        now = self.now()
        ready, due, expired = store.pending(queues, now)
        if not (ready or due or expired or ack):
            return []
        until = now + self.options.lease_seconds
        limit = self.options.delivery_limit
        reason = f"delivered {limit} times without being settled: the worker died running it"
        poison: list[tuple[Any, ...]] = []

        def lease(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            poison.clear()  # the transaction may be tried again
            store.delete(conn, ack)
            if not (ready or due or expired):
                return []
            store.promote_and_reclaim(conn, now, due, expired)
            rows = store.lease(conn, queues, n, consumer, until)
            poison.extend(row for row in rows if row[3] > limit)
            if poison:
                store.to_dead(conn, [row[0] for row in poison], reason, now)
                rows = [row for row in rows if row[3] <= limit]
            return rows

        rows = store.db.write(lease)
        if poison:  # reported to the worker, which logs them and fails their results
            self._fetch_dead += [
                DeadLetter("", row[1], reason, for_listing(row[4], row[5]), now, row[3], store.persistent)
                for row in poison
            ]
        rows.sort(key=lambda row: (-row[2], row[0]))
        return rows

    def fetched_dead_letters(self) -> list[DeadLetter]:
        found, self._fetch_dead = self._fetch_dead, []
        return found

    def _lease_past_unreadable(
        self, store: Store, queues: Sequence[str], n: int, consumer: str, rows: list[tuple[Any, ...]]
    ) -> list[Delivery]:
        """Dead-letter the leased ``rows`` whose envelope cannot be read, with the reason, and
        lease others in their place (off the hot path: only once such a row was met)."""
        got: list[Delivery] = []
        while rows:
            unreadable: list[tuple[int, str, str, int, bytes]] = []
            for row_id, queue, _priority, deliveries, meta, body in rows:
                try:
                    got.append(
                        Delivery(
                            queue,
                            from_row(meta, body),
                            store.tag(row_id),
                            deliveries,
                            store.persistent,
                            consumer,
                        )
                    )
                except UNREADABLE as exc:
                    unreadable.append((row_id, unreadable_reason(exc), queue, deliveries, body))
            if not unreadable:
                break
            now = self.now()
            store.db.write(
                lambda conn, unreadable=unreadable, now=now: [
                    store.to_dead(conn, [entry[0]], entry[1], now) for entry in unreadable
                ]
            )
            # reported to the worker, which logs them (their task id cannot be read)
            self._fetch_dead += [
                DeadLetter("", queue, reason, for_listing(b"", body), now, deliveries, store.persistent)
                for _id, reason, queue, deliveries, body in unreadable
            ]
            rows = self._lease_rows(store, queues, n - len(got), consumer) if len(got) < n else []
        return got

    def _try_fetch(
        self, queues: Sequence[str], n: int, consumer: str, ack: dict[str, list[int]] | None = None
    ) -> list[Delivery]:
        got: list[Delivery] = []
        pending_acks = dict(ack or {})
        for store in self._stores_for():
            ids = pending_acks.pop(store.prefix, [])
            if len(got) >= n:
                if ids:
                    store.db.write(lambda conn, store=store, ids=ids: store.delete(conn, ids))
                continue
            got += self._lease_from(store, queues, n - len(got), consumer, ids)
        return got

    def _fetch(
        self, queues: Sequence[str], n: int, timeout: float, consumer: str, ack: Sequence[Delivery]
    ) -> list[Delivery]:
        got = self._try_fetch(queues, n, consumer, self._group(ack))
        if got or timeout <= 0:
            return got
        deadline = time.monotonic() + timeout
        stores = self._stores_for()
        while True:
            versions = [store.db.data_version() for store in stores]
            dues = [due for due in (store.next_due() for store in stores) if due is not None]
            wake = min(deadline, time.monotonic() + MAX_IDLE_QUERY_INTERVAL)
            if dues:
                wake = min(wake, time.monotonic() + max(0.0, min(dues) - self.now()))
            while time.monotonic() < wake:
                time.sleep(POLL_INTERVAL)
                if [store.db.data_version() for store in stores] != versions:
                    break
            got = self._try_fetch(queues, n, consumer)
            if got or time.monotonic() >= deadline:
                return got

    def _mark_started(self, batch: Sequence[Delivery]) -> list[Delivery]:
        now = self.now()
        groups: dict[tuple[str, str], dict[int, Delivery]] = {}
        for delivery in batch:
            groups.setdefault((delivery.tag[:2], delivery.consumer), {})[int(delivery.tag[2:])] = delivery
        lost: list[Delivery] = []
        for (prefix, consumer), by_id in groups.items():
            store, ids = self._stores[prefix], list(by_id)
            gone = store.db.write(lambda conn, s=store, i=ids, c=consumer: s.start(conn, i, c, now))
            lost += [by_id[row_id] for row_id in gone]
        return lost

    def _ack(self, batch: Sequence[Delivery]) -> None:
        for prefix, ids in self._group(batch).items():
            store = self._stores[prefix]
            store.db.write(lambda conn, store=store, ids=ids: store.delete(conn, ids))

    def _reject(self, batch: Sequence[Delivery], requeue: bool, reason: str) -> None:
        if requeue:
            self._put_back(batch, uncount=0)  # the task ran: its delivery counts
            return
        now = self.now()
        for prefix, ids in self._group(batch).items():
            store = self._stores[prefix]
            store.db.write(lambda conn, store=store, ids=ids: store.to_dead(conn, ids, reason, now))

    def _hand_back(self, batch: Sequence[Delivery]) -> None:
        self._put_back(batch, uncount=1)

    def _put_back(self, batch: Sequence[Delivery], uncount: int) -> None:
        """Make leased rows ready again at their place (their id); ``uncount=1`` takes back
        the delivery their lease counted."""
        for prefix, ids in self._group(batch).items():
            store = self._stores[prefix]
            sql = (
                "UPDATE messages SET state=0, owner=NULL, lease_until=NULL, "
                f"deliveries=MAX(deliveries-?, 0) WHERE state=2 AND id IN ({placeholders(len(ids))})"
            )
            store.db.write(lambda conn, sql=sql, ids=ids: conn.execute(sql, (uncount, *ids)))

    def extend_leases(self, consumers: Sequence[str]) -> int:
        if not consumers:
            return 0
        until = self.now() + self.options.lease_seconds
        sql = (
            "UPDATE messages SET lease_until=? WHERE lease_until IS NOT NULL "
            f"AND owner IN ({placeholders(len(consumers))})"
        )
        total = 0
        for store in self._stores.values():
            total += store.db.write(lambda conn, sql=sql: conn.execute(sql, (until, *consumers)).rowcount)
        return total

    def consumer_lost(
        self,
        consumer: str,
        running: Sequence[str],
        reason: str,
        running_to: str = QUEUE,
        count_unstarted: bool = False,
    ) -> list[str]:
        started = self._group_tags(running)
        limit = self.options.delivery_limit
        now = self.now()
        dead: list[str] = []
        for prefix, store in self._stores.items():
            ran = started.get(prefix, [])

            def release(conn: sqlite3.Connection, store: Store = store, ran: list[int] = ran) -> list[int]:
                marks = placeholders(len(ran))
                doomed: list[int] = []
                if ran and running_to == ACK:
                    conn.execute(f"DELETE FROM messages WHERE owner=? AND id IN ({marks})", (consumer, *ran))
                elif ran:
                    floor = 0 if running_to == DEAD else limit
                    doomed = [
                        row[0]
                        for row in conn.execute(
                            f"SELECT id FROM messages WHERE state=2 AND owner=? AND id IN ({marks}) "
                            "AND deliveries>=?",
                            (consumer, *ran, floor),
                        )
                    ]
                if doomed:
                    suffix = "" if running_to == DEAD else f" (delivered {limit} times)"
                    store.to_dead(conn, doomed, reason + suffix, now)
                # started and not running: the task ran; its ack died with the consumer
                conn.execute(
                    f"DELETE FROM messages WHERE state=3 AND owner=? AND id NOT IN ({marks})",
                    (consumer, *ran),
                )
                conn.execute(
                    "UPDATE messages SET state=0, owner=NULL, lease_until=NULL, "
                    f"deliveries=deliveries - ? * (id NOT IN ({marks})) WHERE state=2 AND owner=?",
                    (int(not count_unstarted), *ran, consumer),
                )
                return doomed

            dead += [store.tag(row_id) for row_id in store.db.write(release)]
        return dead

    def recover_lost(self, reason: str) -> list[DeadLetter]:
        now = self.now()
        lost: list[DeadLetter] = []
        for store in self._stores.values():

            def recover(conn: sqlite3.Connection, store: Store = store) -> list[tuple[Any, ...]]:
                rows = conn.execute(
                    "SELECT id, queue, deliveries, meta, body FROM messages WHERE lease_until<? AND state=3",
                    (now,),
                ).fetchall()
                if rows:
                    store.to_dead(conn, [row[0] for row in rows], reason, now)
                return rows

            if store.db.read("SELECT EXISTS(SELECT 1 FROM messages WHERE lease_until<? AND state=3)", (now,))[
                0
            ][0]:
                for row_id, queue, deliveries, meta, body in store.db.write(recover):
                    lost.append(
                        DeadLetter(
                            store.tag(row_id),
                            queue,
                            reason,
                            for_listing(meta, body),
                            now,
                            deliveries,
                            store.persistent,
                        )
                    )
        return lost

    # -- inspection -------------------------------------------------------------------------

    def queue_length(self, queue: str) -> QueueLength:
        return self.queue_lengths([queue])[0]

    def queue_lengths(self, queues: Sequence[str]) -> list[QueueLength]:
        now = self.now()
        # per queue: ready, scheduled, reserved, running, and since when the oldest ready
        # message waits (its publish time, or its ETA once due)
        counts: dict[str, list[Any]] = {queue: [0, 0, 0, 0, None] for queue in queues}

        def waiting_since(queue: str, since: float) -> None:
            row = counts[queue]
            row[4] = since if row[4] is None else min(row[4], since)

        for store in self._stores.values():
            for queue, count, since in self._ready_counts(store, list(counts)):
                counts[queue][0] += count
                waiting_since(queue, since)
            # messages waiting for an ETA and leased ones: through their own (small) indexes
            for queue, eta in store.db.read("SELECT queue, eta FROM messages WHERE state=1"):
                if queue in counts:
                    due = eta is None or eta <= now
                    counts[queue][0 if due else 1] += 1
                    if due:
                        waiting_since(queue, eta or now)
            for queue, state in store.db.read(
                "SELECT queue, state FROM messages WHERE lease_until IS NOT NULL"
            ):
                if queue in counts and state in (2, 3):
                    counts[queue][state] += 1
        return [
            QueueLength(queue, r[0], r[1], r[2], r[3], None if r[4] is None else max(0.0, now - r[4]))
            for queue, r in ((q, counts[q]) for q in queues)
        ]

    @staticmethod
    def _ready_counts(store: Store, queues: list[str]) -> list[tuple[str, int, float]]:
        """Per queue with ready messages: how many, and the oldest one's publish time.

        Read in one snapshot, through the index of ready messages only: a count of each
        queue's range of it, then the lowest id of each priority present (a few index
        lookups, however long the queue), never the messages themselves. That is twice as
        fast as one ``GROUP BY queue`` over the index, which compares every entry's queue name.
        """

        def read(conn: sqlite3.Connection) -> list[tuple[str, int, float]]:
            firsts: list[tuple[str, int, int]] = []
            for queue in queues:
                (count,) = conn.execute(_COUNT_READY, (queue,)).fetchone()
                if not count:
                    continue
                priorities, below = [], math.inf
                while (row := conn.execute(_NEXT_PRIORITY, (queue, below)).fetchone()) is not None:
                    below = row[0]
                    priorities.append(below)
                first = min(conn.execute(_FIRST_READY, (queue, p)).fetchone()[0] for p in priorities)
                firsts.append((queue, count, first))
            published: dict[int, float] = {}
            for i in range(0, len(firsts), 500):
                ids = [first for _, _, first in firsts[i : i + 500]]
                published.update(
                    conn.execute(
                        f"SELECT id, published_at FROM messages WHERE id IN ({placeholders(len(ids))})", ids
                    )
                )
            # one snapshot: every oldest id is still there to be read
            return [(queue, count, published[first]) for queue, count, first in firsts]

        return store.db.snapshot(read)

    def queue_names(self) -> list[str]:
        names = {row[0] for row in self._durable.db.read("SELECT name FROM queues")}
        for store in self._stores.values():
            names.update(row[0] for row in store.db.read("SELECT DISTINCT queue FROM messages"))
        return sorted(names)

    def purge(self, queue: str) -> int:
        total = 0
        for store in self._stores.values():
            total += store.db.write(
                lambda conn: (
                    conn.execute("DELETE FROM messages WHERE queue=? AND state IN (0, 1)", (queue,)).rowcount
                )
            )
        return total

    def _dead_where(self, ids: Sequence[str] | None, prefix: str) -> tuple[str, tuple[Any, ...]]:
        if ids is None:
            return "", ()
        mine = [int(i[2:]) for i in ids if i.startswith(prefix)]
        return f"WHERE id IN ({placeholders(len(mine))})", tuple(mine)

    def dead_letters(self, limit: int = 100, queue: str | None = None) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        where, params = ("WHERE queue=?", (queue,)) if queue is not None else ("", ())
        for store in self._stores.values():
            for row_id, q, reason, failed_at, deliveries, meta, body in store.db.read(
                "SELECT id, queue, reason, failed_at, deliveries, meta, body FROM dead_letters "
                f"{where} ORDER BY id LIMIT ?",
                (*params, limit),
            ):
                out.append(
                    DeadLetter(
                        store.tag(row_id),
                        q,
                        reason,
                        for_listing(meta, body),
                        failed_at,
                        deliveries,
                        store.persistent,
                    )
                )
        out.sort(key=lambda d: d.failed_at)
        return out[:limit]

    def dead_letter_count(self, queue: str | None = None) -> int:
        where, params = ("WHERE queue=?", (queue,)) if queue is not None else ("", ())
        return sum(
            store.db.read(f"SELECT COUNT(*) FROM dead_letters {where}", params)[0][0]
            for store in self._stores.values()
        )

    def _dead_op(
        self, ids: Sequence[str] | None, op: Callable[[sqlite3.Connection, str, tuple[Any, ...]], int]
    ) -> int:
        total = 0
        for prefix, store in self._stores.items():
            where, params = self._dead_where(ids, prefix)
            if ids is not None and not params:
                continue
            total += store.db.write(lambda conn, where=where, params=params: op(conn, where, params))
        return total

    def requeue_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        now = self.now()

        def requeue(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> int:
            conn.execute(
                "INSERT INTO messages (state, queue, priority, deliveries, published_at, meta, body) "
                f"SELECT 0, queue, priority, 0, ?, meta, body FROM dead_letters {where} ORDER BY id",
                (now, *params),
            )
            return conn.execute(f"DELETE FROM dead_letters {where}", params).rowcount

        return self._dead_op(ids, requeue)

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        return self._dead_op(
            ids,
            lambda conn, where, params: conn.execute(f"DELETE FROM dead_letters {where}", params).rowcount,
        )

    @property
    def location(self) -> str:
        """The database file's absolute path (a relative URL depends on the working directory)."""
        return f"sqlite:///{self.path}"

    def housekeeping(self) -> None:
        for store in self._stores.values():
            store.db.checkpoint(store.checkpoint_sync)

    # -- heartbeats -------------------------------------------------------------------------

    def put_node_stats(self, node: str, payload: bytes, ttl: float) -> None:
        now = self.now()
        self._durable.db.write(
            lambda conn: conn.execute(
                "INSERT INTO nodes(node, payload, updated_at, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(node) DO UPDATE SET payload=excluded.payload, "
                "updated_at=excluded.updated_at, expires_at=excluded.expires_at",
                (node, payload, now, now + ttl),
            )
        )

    def node_stats(self) -> list[NodeStats]:
        rows = self._durable.db.read(
            "SELECT node, payload, updated_at, expires_at FROM nodes WHERE expires_at>? ORDER BY node",
            (self.now(),),
        )
        return [NodeStats(node, bytes(payload), updated, expires) for node, payload, updated, expires in rows]

    def close(self) -> None:
        for store in self._stores.values():
            store.db.close()
