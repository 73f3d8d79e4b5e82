"""The statements the SQLite broker runs on one of its two database files.

:class:`Store` holds one file (durable or transient) and the statements of the
consumer's side: finding what is pending, taking back expired leases, leasing,
the early ack with its lease check, deleting and dead-lettering. The schema and
the lease rules are documented in :mod:`celeriac.brokers.sqlite.broker`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from celeriac.brokers.sqlite.file import SQLiteFile, Sync, placeholders

DEAD_COPY = """
    INSERT INTO dead_letters (reason, failed_at, queue, priority, deliveries, published_at, meta, body)
    SELECT ?, ?, queue, priority, deliveries, published_at, meta, body FROM messages WHERE id IN ({ids})
"""


class Store:
    """One of the two database files, with the statements the broker runs on it."""

    def __init__(
        self, prefix: str, db: SQLiteFile, persistent: bool, publish_sync: Sync, checkpoint_sync: Sync
    ) -> None:
        self.prefix = prefix
        self.db = db
        self.persistent = persistent
        self.publish_sync: Sync = publish_sync
        self.checkpoint_sync: Sync = checkpoint_sync
        self._select_sql: dict[str, str] = {}
        self._pending_sql: dict[int, str] = {}

    def tag(self, row_id: int) -> str:
        return f"{self.prefix}{row_id}"

    # -- consumer statements ------------------------------------------------------------------

    def pending(self, queues: Sequence[str], now: float) -> tuple[bool, bool, bool]:
        """Whether there are ready messages in ``queues``, due scheduled ones, expired leases."""
        sql = self._pending_sql.get(len(queues))
        if sql is None:
            sql = (
                "SELECT EXISTS(SELECT 1 FROM messages WHERE state=0 AND queue IN "
                f"({placeholders(len(queues))})), EXISTS(SELECT 1 FROM messages WHERE state=1 "
                "AND eta<=?), EXISTS(SELECT 1 FROM messages WHERE state=2 AND lease_until<?)"
            )
            self._pending_sql[len(queues)] = sql
        ready, due, expired = self.db.read(sql, (*queues, now, now))[0]
        return bool(ready), bool(due), bool(expired)

    def next_due(self) -> float | None:
        """When the next scheduled message falls due or the next lease expires."""
        row = self.db.read(
            "SELECT (SELECT MIN(eta) FROM messages WHERE state=1), "
            "(SELECT MIN(lease_until) FROM messages WHERE state=2)"
        )[0]
        candidates = [value for value in row if value is not None]
        return min(candidates) if candidates else None

    @staticmethod
    def promote_and_reclaim(conn: sqlite3.Connection, now: float, due: bool, expired: bool) -> None:
        """Make due scheduled messages ready, and take back the leases of dead consumers."""
        if due:
            conn.execute("UPDATE messages SET state=0, eta=NULL WHERE state=1 AND eta<=?", (now,))
        if expired:
            conn.execute(
                "UPDATE messages SET state=0, owner=NULL, lease_until=NULL WHERE state=2 AND lease_until<?",
                (now,),
            )

    def lease(
        self, conn: sqlite3.Connection, queues: Sequence[str], n: int, consumer: str, until: float
    ) -> list[tuple[Any, ...]]:
        if len(queues) == 1:
            return conn.execute(
                "UPDATE messages SET state=2, owner=?, lease_until=?, deliveries=deliveries+1 "
                "WHERE id IN (SELECT id FROM messages WHERE state=0 AND queue=? "
                "ORDER BY priority DESC, id LIMIT ?) "
                "RETURNING id, queue, priority, deliveries, meta, body",
                (consumer, until, queues[0], n),
            ).fetchall()
        candidates: list[tuple[int, int]] = []
        for queue in queues:
            candidates += conn.execute(
                "SELECT -priority, id FROM messages WHERE state=0 AND queue=? "
                "ORDER BY priority DESC, id LIMIT ?",
                (queue, n),
            ).fetchall()
        chosen = [row_id for _, row_id in sorted(candidates)[:n]]
        if not chosen:
            return []
        return conn.execute(
            "UPDATE messages SET state=2, owner=?, lease_until=?, deliveries=deliveries+1 "
            f"WHERE id IN ({placeholders(len(chosen))}) "
            "RETURNING id, queue, priority, deliveries, meta, body",
            (consumer, until, *chosen),
        ).fetchall()

    @staticmethod
    def start(conn: sqlite3.Connection, ids: Sequence[int], consumer: str, now: float) -> list[int]:
        """Early ack: mark started the rows ``consumer`` still holds under an unexpired lease,
        checked in the same statement; return the other ids. Those whose lease ran out but
        nobody took over yet go back to ready, as ``promote_and_reclaim`` would do."""
        marks = placeholders(len(ids))
        updated = conn.execute(
            f"UPDATE messages SET state=3 WHERE id IN ({marks}) AND state IN (2, 3) AND owner=? "
            "AND lease_until>?",
            (*ids, consumer, now),
        ).rowcount
        if updated == len(ids):  # the usual case: one statement, nothing read back
            return []
        marked = {
            row[0]
            for row in conn.execute(
                f"SELECT id FROM messages WHERE id IN ({marks}) AND state=3 AND owner=?", (*ids, consumer)
            )
        }
        lost = [row_id for row_id in ids if row_id not in marked]
        if lost:
            conn.execute(
                "UPDATE messages SET state=0, owner=NULL, lease_until=NULL "
                f"WHERE id IN ({placeholders(len(lost))}) AND state=2 AND owner=?",
                (*lost, consumer),
            )
        return lost

    @staticmethod
    def delete(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
        """Remove messages (acked, or copied to the dead letters)."""
        if ids:
            conn.execute(f"DELETE FROM messages WHERE id IN ({placeholders(len(ids))})", tuple(ids))

    @classmethod
    def to_dead(cls, conn: sqlite3.Connection, ids: Sequence[int], reason: str, now: float) -> None:
        conn.execute(DEAD_COPY.format(ids=placeholders(len(ids))), (reason, now, *ids))
        cls.delete(conn, ids)
