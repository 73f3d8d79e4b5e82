"""One SQLite database file shared by many processes: connections, locking, retries.

Used by the SQLite broker and the SQLite result backend. Rules it keeps:

* WAL journal, so readers never block the one writer.
* Every write is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken at
  the start, so two writers never deadlock upgrading a read lock.
* Lock waits are retried here with short sleeps (tens of microseconds, growing to
  a millisecond) instead of SQLite's busy handler, whose first sleep is a whole
  millisecond; a write that cannot get the lock for ``busy_timeout`` seconds
  fails with a :class:`~celeriac.errors.BrokerError` that says so.
* ``synchronous`` is chosen per write: ``FULL`` fsyncs the WAL at commit (and
  with it every earlier commit), ``NORMAL`` survives any process crash but may
  lose the last commits on power loss, ``OFF`` never fsyncs.
* Checkpoints (copying the write-ahead log into the database, with an fsync under
  ``NORMAL``) are kept off the consumers' hot path: a worker's master calls
  :meth:`SQLiteFile.checkpoint` twice a second, and consumer commits
  (``write(..., publishing=False)``) checkpoint only past
  :data:`CONSUMER_AUTOCHECKPOINT_PAGES`. Publishes keep SQLite's default of
  1000 pages, so the log is recycled and an fsync'd publish overwrites blocks
  instead of growing the file (which costs a metadata flush too).
* A connection belongs to the process that opened it. After ``fork()`` the child
  opens its own; the inherited one is left untouched (closing it in the child
  could disturb the parent's locks).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from celeriac.errors import BrokerError, ConfigurationError

T = TypeVar("T")
Sync = Literal["FULL", "NORMAL", "OFF"]

#: Connections inherited over fork(): kept referenced so they are never closed in the child.
_ABANDONED: list[sqlite3.Connection] = []
#: Lock waits first yield the CPU this many times (the holder is usually done within
#: microseconds), then sleep.
_YIELDS = 20
#: Pages of write-ahead log after which a publish checkpoints (SQLite's default).
PUBLISH_AUTOCHECKPOINT_PAGES = 1000
#: The same for consumer commits: a safety net, the master checkpoints long before.
CONSUMER_AUTOCHECKPOINT_PAGES = 20000


def path_from_url(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///rel/path.db`` → ``rel/path.db``; ``sqlite:////abs.db`` → ``/abs.db``.

    Query parameters are returned as options. An in-memory database cannot be
    shared between processes and is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("sqlite", "sqla+sqlite", "db+sqlite"):
        raise ConfigurationError(f"{url!r} is not a sqlite:// URL")
    if parts.netloc:
        raise ConfigurationError(
            f"{url!r}: a SQLite URL has no host; use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
    if not path or path == ":memory:":
        raise ConfigurationError(
            f"{url!r}: give a database file, e.g. sqlite:///celeriac.db; an in-memory "
            "database cannot be shared by the worker's processes"
        )
    return path, dict(parse_qsl(parts.query))


#: SQLite's primary result codes for a lock another connection holds (SQLITE_BUSY: "database
#: is locked") or a table locked within a shared cache (SQLITE_LOCKED).
_LOCK_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused for a lock (retry), by its result code rather than its text."""
    code = getattr(exc, "sqlite_errorcode", None)  # unset on errors the sqlite3 module makes itself
    return code is not None and (code & 0xFF) in _LOCK_CODES


class SQLiteFile:
    """A database file opened by this process, with retrying transactions."""

    def __init__(
        self,
        path: str,
        component: str,
        schema: Sequence[str],
        schema_version: int,
        default_sync: Sync = "NORMAL",
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = os.path.abspath(path)
        self.component = component
        self.schema = tuple(schema)
        self.schema_version = schema_version
        self.default_sync: Sync = default_sync
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        #: threads of a process share its connection: one transaction at a time on it (a second
        #: BEGIN would fail, or its statements would land in the other thread's transaction);
        #: re-entrant, so that a nested transaction fails with SQLite's error instead of hanging
        self._tx = threading.RLock()
        self._mode: tuple[Sync, int] | None = None

    # -- connection -------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema created) on first use."""
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:
                _ABANDONED.append(self._conn)
            self._tx = threading.RLock()  # a forked child's copy may be held by a parent's thread
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            raise ConfigurationError(
                f"the directory of the SQLite database {self.path!r} does not exist: create it "
                "or point broker_url / result_backend elsewhere"
            )
        try:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise BrokerError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._mode = None
        self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA mmap_size=268435456")

        conn.execute("PRAGMA cache_size=-16000")
        if self._retry(lambda: self._schema_version(conn)) != self.schema_version:
            self._create_schema(conn)
        return conn

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        """The schema version of this component in the file (None: not created yet)."""
        created = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='celeriac_schema'"
        ).fetchone()
        if created is None:
            return None
        row = conn.execute(
            "SELECT version FROM celeriac_schema WHERE component=?", (self.component,)
        ).fetchone()
        return row[0] if row else None

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        def create() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS celeriac_schema "
                    "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
                )
                for statement in self.schema:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR REPLACE INTO celeriac_schema(component, version) VALUES (?, ?)",
                    (self.component, self.schema_version),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._retry(create)

    def close(self) -> None:
        """Close this process's connection (never one inherited over fork)."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    # -- retries ----------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.00002
        attempts = 0
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc):
                    raise BrokerError(f"SQLite error on {self.path!r}: {exc}") from exc
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"SQLite database {self.path!r} stayed locked for {self.busy_timeout:.0f} s: "
                        "another process holds a long write transaction"
                    ) from exc
                attempts += 1
                if attempts <= _YIELDS:
                    os.sched_yield()
                    continue
                time.sleep(pause)
                pause = min(pause * 2, 0.001)
            except sqlite3.DatabaseError as exc:
                raise BrokerError(f"SQLite error on {self.path!r}: {exc}") from exc

    # -- statements -------------------------------------------------------------------------

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only statement outside any transaction (waiting for another thread's)."""
        conn = self.conn

        def attempt() -> list[tuple[Any, ...]]:
            with self._tx:  # not inside, nor beside, a transaction another thread runs on conn
                return conn.execute(sql, params).fetchall()

        return self._retry(attempt)

    def snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run the reads of ``fn(conn)`` in one read transaction: they all see the same state."""
        conn = self.conn

        def attempt() -> T:
            with self._tx:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")  # it wrote nothing: ending it is all

        return self._retry(attempt)

    def _set_mode(self, conn: sqlite3.Connection, sync: Sync, checkpoint_pages: int) -> None:
        if self._mode != (sync, checkpoint_pages):
            conn.execute(f"PRAGMA synchronous={sync}")
            conn.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
            self._mode = (sync, checkpoint_pages)

    def write(
        self, fn: Callable[[sqlite3.Connection], T], sync: Sync | None = None, publishing: bool = False
    ) -> T:
        """Run ``fn(conn)`` inside one ``BEGIN IMMEDIATE`` transaction and commit it."""
        conn = self.conn
        pages = PUBLISH_AUTOCHECKPOINT_PAGES if publishing else CONSUMER_AUTOCHECKPOINT_PAGES

        def attempt() -> T:
            with self._tx:
                self._set_mode(conn, sync or self.default_sync, pages)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result

        return self._retry(attempt)

    def checkpoint(self, sync: Sync) -> None:
        """Copy the write-ahead log into the database without blocking readers or writers.

        With ``sync`` NORMAL or FULL the log is fsynced before the copy and the
        database after it, so a power loss cannot leave a half-copied database.
        """
        conn = self.conn

        def attempt() -> None:
            with self._tx:
                self._set_mode(conn, sync, PUBLISH_AUTOCHECKPOINT_PAGES)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        self._retry(attempt)

    def data_version(self) -> int:
        """Changes whenever another connection commits to this file (cheap to poll)."""
        conn = self.conn

        def attempt() -> int:
            with self._tx:
                return int(conn.execute("PRAGMA data_version").fetchone()[0])

        return self._retry(attempt)


def placeholders(n: int) -> str:
    """``?,?,?`` for ``n`` parameters."""
    return ",".join("?" * n)
