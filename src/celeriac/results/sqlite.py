"""SQLite result backend: a ``results`` table, by default in the broker's own file.

Schema: ``results(task_id PRIMARY KEY, state, content_type, result, traceback,
name, retries, worker, date_done)``, indexed on ``date_done`` for expiry.
Writes use ``synchronous=NORMAL``: a result survives any process crash; a power
loss may drop the last few (the task itself is not lost).
A waiting ``get()`` polls ``PRAGMA data_version`` every 2 ms and reads the row
only when another connection committed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from celeriac.brokers.sqlite.file import SQLiteFile, path_from_url
from celeriac.results.base import PendingResult, ResultBackend, ResultRecord

SCHEMA_VERSION = 1
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS results (
        task_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        content_type TEXT NOT NULL,
        result BLOB,
        traceback TEXT,
        name TEXT,
        retries INTEGER NOT NULL DEFAULT 0,
        worker TEXT,
        date_done REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS results_date_done ON results(date_done)",
)

_UPSERT = """
    INSERT INTO results (task_id, state, content_type, result, traceback, name, retries, worker, date_done)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(task_id) DO UPDATE SET state=excluded.state, content_type=excluded.content_type,
        result=excluded.result, traceback=excluded.traceback, name=excluded.name,
        retries=excluded.retries, worker=excluded.worker, date_done=excluded.date_done
    WHERE results.state != 'SUCCESS'
"""

POLL_INTERVAL = 0.002


class SQLiteResultBackend(ResultBackend):
    """Results in a SQLite file shared by producers and workers."""

    def __init__(self, url: str, **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        path, _ = path_from_url(url)
        self.db = SQLiteFile(path, "results", SCHEMA, SCHEMA_VERSION, "NORMAL")

    def store_many(self, items: Sequence[PendingResult]) -> None:
        if not items:
            return
        now = time.time()
        rows = []
        for item in items:
            content_type, raw = self.encode(item)
            rows.append(
                (
                    item.task_id,
                    item.state,
                    content_type,
                    raw,
                    item.traceback,
                    item.name,
                    item.retries,
                    item.worker,
                    now,
                )
            )
        self.db.write(lambda conn: conn.executemany(_UPSERT, rows))

    def get(self, task_id: str) -> ResultRecord | None:
        rows = self.db.read(
            "SELECT state, content_type, result, traceback, name, retries, worker, date_done "
            "FROM results WHERE task_id=?",
            (task_id,),
        )
        if not rows:
            return None
        state, content_type, raw, traceback, name, retries, worker, date_done = rows[0]
        return self.decode(
            task_id,
            state,
            content_type,
            raw,
            traceback=traceback,
            name=name,
            retries=retries,
            worker=worker,
            date_done=date_done,
        )

    def forget(self, task_id: str) -> None:
        self.db.write(lambda conn: conn.execute("DELETE FROM results WHERE task_id=?", (task_id,)))

    def cleanup(self) -> int:
        if self.expires is None:
            return 0
        cutoff = time.time() - self.expires
        return self.db.write(
            lambda conn: conn.execute("DELETE FROM results WHERE date_done<?", (cutoff,)).rowcount
        )

    def _change_token(self) -> int:
        return self.db.data_version()

    def _wait_for_change(self, token: int, until: float) -> None:
        while self.db.data_version() == token and time.monotonic() < until:
            time.sleep(POLL_INTERVAL)

    def close(self) -> None:
        self.db.close()
