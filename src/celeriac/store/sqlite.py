"""SQLite store: three tables in the broker's (or result backend's) own database file.

``sqlite:///celeriac.db`` opens the same file the SQLite broker and result
backend use, through :class:`~celeriac.brokers.sqlite.file.SQLiteFile` (WAL, one
``BEGIN IMMEDIATE`` transaction per write with lock-wait retries, a connection
per process, safe across ``fork()``). The tables are created on first use under
the schema component ``store``.

Data model (the DDL is :data:`SCHEMA` below):

=====================  =====================================================================
table                  rows
=====================  =====================================================================
``store_values``       ``key`` → ``value`` (BLOB), ``owner`` (the lease holder, or NULL) and
                       ``expires_at``; ``incr`` keeps its count as ASCII decimal in ``value``
``store_set_members``  (``name``, ``member``) → ``expires_at``: one row per member, each with
                       its own expiry
``store_records``      (``key``, ``member``) → ``expires_at``: every member of a record copies
                       the expiry the record got from its first member, so the record expires
                       as a whole
=====================  =====================================================================

``expires_at`` is POSIX seconds from the writer's ``time.time()`` (every process
sharing the file runs on the one machine, so they share its clock), NULL for
never. A row whose ``expires_at`` is not after now is treated as
absent by every statement; :meth:`SQLiteStore.cleanup` deletes such rows.

Every primitive is one statement or one write transaction, so it is atomic
against every thread and process using the file. Writes use
``synchronous=NORMAL``: they survive any process crash; a power loss may drop
the last few commits.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from celeriac.brokers.sqlite.file import SQLiteFile, path_from_url
from celeriac.errors import BrokerError
from celeriac.store.base import Store

T = TypeVar("T")

SCHEMA_VERSION = 1
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS store_values (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        owner TEXT,
        expires_at REAL)""",
    "CREATE INDEX IF NOT EXISTS store_values_expires ON store_values(expires_at)",
    """CREATE TABLE IF NOT EXISTS store_set_members (
        name TEXT NOT NULL,
        member TEXT NOT NULL,
        expires_at REAL,
        PRIMARY KEY (name, member))""",
    "CREATE INDEX IF NOT EXISTS store_set_members_expires ON store_set_members(expires_at)",
    """CREATE TABLE IF NOT EXISTS store_records (
        key TEXT NOT NULL,
        member TEXT NOT NULL,
        expires_at REAL,
        PRIMARY KEY (key, member))""",
    "CREATE INDEX IF NOT EXISTS store_records_expires ON store_records(expires_at)",
)

#: Appended to a WHERE clause: the row has not expired at the time bound last (``?``).
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_EXPIRED = "expires_at <= ?"
_TABLES = (("store_values", "key"), ("store_set_members", "name"), ("store_records", "key"))


def _deadline(ttl: float | None, now: float) -> float | None:
    return None if ttl is None else now + ttl


class SQLiteStore(Store):
    """The store in a SQLite file shared by the processes of one machine."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.clock = clock
        path, _ = path_from_url(url)
        self.db = SQLiteFile(path, "store", SCHEMA, SCHEMA_VERSION, "NORMAL", busy_timeout)

    def _write(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run ``fn(conn, now)`` as one write transaction. Store writes may come from
        producer processes, which no master checkpoints for: publish-style checkpoints."""
        return self.db.write(lambda conn: fn(conn, self.clock()), publishing=True)

    # -- values -----------------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        rows = self.db.read(f"SELECT value FROM store_values WHERE key=? AND {_LIVE}", (key, self.clock()))
        return bytes(rows[0][0]) if rows else None

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        def write(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO store_values(key, value, owner, expires_at) VALUES (?, ?, NULL, ?)",
                (key, value, _deadline(ttl, now)),
            )

        self._write(write)

    def _delete(self, key: str) -> bool:
        def write(conn: sqlite3.Connection, now: float) -> bool:
            found = False
            for table, column in _TABLES:
                live = conn.execute(f"DELETE FROM {table} WHERE {column}=? AND {_LIVE}", (key, now))
                found = live.rowcount > 0 or found
                conn.execute(f"DELETE FROM {table} WHERE {column}=?", (key,))
            return found

        return self._write(write)

    def _incr(self, key: str, amount: int, ttl: float | None) -> int:
        def write(conn: sqlite3.Connection, now: float) -> int:
            row = conn.execute(
                f"SELECT value FROM store_values WHERE key=? AND {_LIVE}", (key, now)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT OR REPLACE INTO store_values(key, value, owner, expires_at) "
                    "VALUES (?, ?, NULL, ?)",
                    (key, str(amount).encode(), _deadline(ttl, now)),
                )
                return amount
            try:
                count = int(bytes(row[0])) + amount
            except ValueError:
                raise BrokerError(f"store key {key!r} does not hold an integer: cannot incr it") from None
            conn.execute("UPDATE store_values SET value=? WHERE key=?", (str(count).encode(), key))
            return count

        return self._write(write)

    # -- leases -----------------------------------------------------------------------------

    def _add(self, key: str, value: bytes, ttl: float, owner: str) -> bool:
        def write(conn: sqlite3.Connection, now: float) -> bool:
            conn.execute(f"DELETE FROM store_values WHERE key=? AND {_EXPIRED}", (key, now))
            added = conn.execute(
                "INSERT OR IGNORE INTO store_values(key, value, owner, expires_at) VALUES (?, ?, ?, ?)",
                (key, value, owner, now + ttl),
            )
            return added.rowcount == 1

        return self._write(write)

    def _renew(self, key: str, owner: str, ttl: float) -> bool:
        def write(conn: sqlite3.Connection, now: float) -> bool:
            renewed = conn.execute(
                f"UPDATE store_values SET expires_at=? WHERE key=? AND owner=? AND {_LIVE}",
                (now + ttl, key, owner, now),
            )
            return renewed.rowcount == 1

        return self._write(write)

    def _release(self, key: str, owner: str) -> bool:
        def write(conn: sqlite3.Connection, now: float) -> bool:
            released = conn.execute(
                f"DELETE FROM store_values WHERE key=? AND owner=? AND {_LIVE}", (key, owner, now)
            )
            return released.rowcount == 1

        return self._write(write)

    def _owner_of(self, key: str) -> str | None:
        rows = self.db.read(f"SELECT owner FROM store_values WHERE key=? AND {_LIVE}", (key, self.clock()))
        return rows[0][0] if rows else None

    # -- sets -------------------------------------------------------------------------------

    def _set_add(self, name: str, member: str, ttl: float | None) -> bool:
        def write(conn: sqlite3.Connection, now: float) -> bool:
            present = conn.execute(
                f"SELECT 1 FROM store_set_members WHERE name=? AND member=? AND {_LIVE}", (name, member, now)
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO store_set_members(name, member, expires_at) VALUES (?, ?, ?)",
                (name, member, _deadline(ttl, now)),
            )
            return present is None

        return self._write(write)

    def _set_contains(self, name: str, member: str) -> bool:
        rows = self.db.read(
            f"SELECT 1 FROM store_set_members WHERE name=? AND member=? AND {_LIVE}",
            (name, member, self.clock()),
        )
        return bool(rows)

    def _set_members(self, name: str) -> set[str]:
        rows = self.db.read(
            f"SELECT member FROM store_set_members WHERE name=? AND {_LIVE}", (name, self.clock())
        )
        return {member for (member,) in rows}

    def _set_remove(self, name: str, member: str) -> bool:
        def write(conn: sqlite3.Connection, now: float) -> bool:
            live = conn.execute(
                f"DELETE FROM store_set_members WHERE name=? AND member=? AND {_LIVE}", (name, member, now)
            )
            conn.execute("DELETE FROM store_set_members WHERE name=? AND member=?", (name, member))
            return live.rowcount == 1

        return self._write(write)

    # -- records ----------------------------------------------------------------------------

    def _record_once(self, key: str, member: str, ttl: float | None) -> int:
        def write(conn: sqlite3.Connection, now: float) -> int:
            conn.execute(f"DELETE FROM store_records WHERE key=? AND {_EXPIRED}", (key, now))
            existing = conn.execute("SELECT expires_at FROM store_records WHERE key=? LIMIT 1", (key,))
            row = existing.fetchone()
            expires_at = _deadline(ttl, now) if row is None else row[0]
            conn.execute(
                "INSERT OR IGNORE INTO store_records(key, member, expires_at) VALUES (?, ?, ?)",
                (key, member, expires_at),
            )
            return conn.execute("SELECT COUNT(*) FROM store_records WHERE key=?", (key,)).fetchone()[0]

        return self._write(write)

    def _record_count(self, key: str) -> int:
        rows = self.db.read(
            f"SELECT COUNT(*) FROM store_records WHERE key=? AND {_LIVE}", (key, self.clock())
        )
        return int(rows[0][0])

    # -- maintenance ------------------------------------------------------------------------

    def cleanup(self) -> int:
        """Delete every expired row of the three tables in one transaction; answer how many."""

        def write(conn: sqlite3.Connection, now: float) -> int:
            return sum(
                conn.execute(f"DELETE FROM {table} WHERE {_EXPIRED}", (now,)).rowcount for table, _ in _TABLES
            )

        return self._write(write)

    def close(self) -> None:
        self.db.close()
