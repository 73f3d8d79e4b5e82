"""The contract on the SQLite broker, plus what only the SQLite broker promises."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import sqlite3
import threading

import pytest

from celeriac.brokers.base import BrokerOptions
from celeriac.brokers.sqlite.broker import SQLiteBroker
from celeriac.errors import ConfigurationError
from celeriac.protocol.entities import Queue
from tests.contract.broker_contract import BrokerContract, labels, out


class TestSQLiteBroker(BrokerContract):
    reports_oldest_age = True

    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path):
        self.path = tmp_path / "broker.db"

    def make_broker(self, options: BrokerOptions) -> SQLiteBroker:
        return SQLiteBroker(f"sqlite:///{self.path}", options)

    def test_durable_messages_survive_reopening(self, broker, q):
        broker.publish([out(q, "kept")])
        broker.close()
        reopened = self.make_broker(BrokerOptions())
        assert labels(reopened.fetch([q], 1, 0, "c")) == ["kept"]
        reopened.close()

    def test_transient_messages_live_in_the_boot_scoped_file(self, broker, q):
        broker.declare_queue(Queue(q, durable=False))
        broker.publish([out(q, "fast", persistent=False)])
        assert os.path.exists(broker.transient_path)
        assert broker.transient_path.startswith(str(self.path) + ".transient-")
        durable_rows = broker._durable.db.read("SELECT COUNT(*) FROM messages")[0][0]
        transient_rows = broker._transient.db.read("SELECT COUNT(*) FROM messages")[0][0]
        assert (durable_rows, transient_rows) == (0, 1)

    def test_persistent_message_on_transient_queue_is_transient(self, broker, q):
        broker.declare_queue(Queue(q, durable=False))
        broker.publish([out(q, "p", persistent=True)])
        assert broker._transient.db.read("SELECT COUNT(*) FROM messages")[0][0] == 1

    def test_transient_files_of_earlier_boots_are_removed(self, tmp_path, q):
        stale = f"{self.path}.transient-000000000000"
        with open(stale, "wb") as fh:
            fh.write(b"old boot")
        broker = self.make_broker(BrokerOptions())
        broker.declare_queue(Queue(q))
        assert not os.path.exists(stale)
        assert glob.glob(f"{self.path}.transient-*") == [] or os.path.exists(broker.transient_path)
        broker.close()

    def test_producer_learns_a_queue_is_transient_from_the_declaration(self, broker, q):
        broker.declare_queue(Queue(q, durable=False))
        producer = self.make_broker(BrokerOptions())
        producer.publish([out(q, "x")])
        assert producer._transient.db.read("SELECT COUNT(*) FROM messages")[0][0] == 1
        producer.close()

    def test_in_memory_url_is_refused_with_a_fix(self):
        with pytest.raises(ConfigurationError, match="database file"):
            SQLiteBroker("sqlite:///:memory:")

    def test_missing_directory_is_a_clear_error(self, tmp_path):
        broker = SQLiteBroker(f"sqlite:///{tmp_path}/missing/dir/x.db")
        with pytest.raises(ConfigurationError, match="does not exist"):
            broker.queue_length("q")

    def test_bad_fsync_option_names_the_choices(self, tmp_path):
        with pytest.raises(ConfigurationError, match=r"'publish'.*'all'"):
            SQLiteBroker(f"sqlite:///{tmp_path}/x.db", BrokerOptions(transport_options={"fsync": "always"}))

    def test_housekeeping_checkpoints_the_write_ahead_log(self, broker, q, tmp_path):
        def rows_in_the_database_file_alone() -> int:
            copy = tmp_path / "main-file-only.db"
            shutil.copyfile(broker.path, copy)  # the -wal file is left behind
            with contextlib.closing(sqlite3.connect(copy)) as conn:
                if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='messages'").fetchone():
                    return 0
                return conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

        broker.publish([out(q, str(i)) for i in range(50)])
        assert rows_in_the_database_file_alone() == 0, "the messages are still only in the log"
        broker.housekeeping()
        assert rows_in_the_database_file_alone() == 50

    def test_location_names_the_absolute_file(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        broker = SQLiteBroker("sqlite:///relative.db")
        assert broker.location == f"sqlite:///{tmp_path / 'relative.db'}"

    def test_oldest_age_is_the_oldest_message_whatever_its_priority(self, broker, q):
        clock = [1_000.0]
        broker.now = lambda: clock[0]
        other = q + "-other"
        broker.declare_queue(Queue(other, durable=False))  # its messages live in the other file
        broker.publish([out(q, "old-low", priority=0), out(other, "old-transient")])
        clock[0] = 1_060.0
        broker.publish([out(q, "new-high", priority=9), out(q, "new-mid", priority=5)])
        clock[0] = 1_100.0
        mine, theirs = broker.queue_lengths([q, other])
        assert (mine.ready, mine.oldest_age) == (3, 100.0), "served last, waiting longest"
        assert (theirs.ready, theirs.oldest_age) == (1, 100.0)
        assert labels(broker.fetch([q], 2, 0, "c")) == ["new-high", "new-mid"]
        assert broker.queue_lengths([q])[0].oldest_age == 100.0
        assert labels(broker.fetch([q], 1, 0, "c")) == ["old-low"]
        broker.publish([out(q, "newest", priority=5)])
        assert broker.queue_lengths([q])[0].oldest_age == 0.0

    def test_threads_sharing_a_broker_publish_and_measure_at_once(self, broker, q):
        # a web server's threads sending tasks while the monitor samples, on one broker
        errors: list[BaseException] = []
        stop = threading.Event()

        def publish(n: int) -> None:
            try:
                for i in range(150):
                    broker.publish([out(q, f"{n}-{i}"), out(q + "-b", f"{n}-{i}")])
            except BaseException as exc:
                errors.append(exc)

        def measure() -> None:
            try:
                while not stop.is_set():
                    broker.queue_lengths([q, q + "-b"])
            except BaseException as exc:
                errors.append(exc)

        sampler = threading.Thread(target=measure)
        sampler.start()
        producers = [threading.Thread(target=publish, args=(n,)) for n in range(6)]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
        stop.set()
        sampler.join()
        assert errors == []
        assert [n.ready for n in broker.queue_lengths([q, q + "-b"])] == [900, 900]


def _insert_foreign_row(path, queue: str, meta: bytes, body: bytes = b"[[], {}, {}]") -> None:
    """A ready row written by another program, behind the broker's back."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO messages (queue, state, priority, published_at, meta, body) "
            "VALUES (?, 0, 0, 0, ?, ?)",
            (queue, meta, body),
        )


UNREADABLE_ROWS = [
    pytest.param(b"{not json", "is not valid JSON", id="bad-json"),
    pytest.param(
        b'{"headers": {}, "properties": {}, "content_encoding": "utf-8"}',
        "has no 'content_type' field",
        id="missing-field",
    ),
    pytest.param(b"[1, 2]", "wrong type", id="not-an-object"),
]


@pytest.mark.parametrize(("meta", "what"), UNREADABLE_ROWS)
@pytest.mark.parametrize("window", [1, 4])
def test_unreadable_row_goes_to_the_dead_letters_and_the_message_behind_it_is_fetched(
    tmp_path, meta, what, window
):
    path = tmp_path / "broker.db"
    broker = SQLiteBroker(f"sqlite:///{path}", BrokerOptions())
    try:
        q = "foreign"
        broker.declare_queue(Queue(q))
        _insert_foreign_row(path, q, meta)
        broker.publish([out(q, "valid")])
        got = broker.fetch([q], window, 0, "c1")
        assert labels(got) == ["valid"]
        [dead] = broker.dead_letters(queue=q)
        assert dead.reason.startswith("the message cannot be read: its envelope")
        assert what in dead.reason
        assert dead.envelope.body == b"[[], {}, {}]"  # listed, not an error
        assert broker.queue_length(q).total == 1  # the valid message, leased
        # reported to the worker once, which logs it
        [reported] = broker.fetched_dead_letters()
        assert (reported.queue, reported.reason) == (q, dead.reason)
        assert broker.fetched_dead_letters() == []
    finally:
        broker.close()


def test_unreadable_rows_in_a_row_are_all_dead_lettered_in_one_fetch(tmp_path):
    path = tmp_path / "broker.db"
    broker = SQLiteBroker(f"sqlite:///{path}", BrokerOptions())
    try:
        broker.declare_queue(Queue("foreign"))
        for _ in range(5):
            _insert_foreign_row(path, "foreign", b"{not json")
        broker.publish([out("foreign", "a"), out("foreign", "b")])
        assert labels(broker.fetch(["foreign"], 2, 0, "c1")) == ["a", "b"]
        assert broker.dead_letter_count("foreign") == 5
    finally:
        broker.close()


def test_poison_dead_lettered_while_fetching_is_reported_to_the_worker(tmp_path):
    broker = SQLiteBroker(
        f"sqlite:///{tmp_path / 'p.db'}", BrokerOptions(lease_seconds=0.3, delivery_limit=2)
    )
    try:
        broker.publish([out("q", "poison")])
        assert broker.fetch(["q"], 1, 0, "c1")
        assert broker.fetch(["q"], 1, 3, "c2")  # c1's lease ran out: the second delivery
        assert broker.fetched_dead_letters() == []
        assert broker.fetch(["q"], 1, 3, "c3") == []  # a third would pass the limit of 2
        (letter,) = broker.fetched_dead_letters()
        assert (letter.queue, letter.deliveries) == ("q", 3)
        assert "2 times" in letter.reason and letter.envelope.body == out("q", "poison").envelope.body
        assert broker.fetched_dead_letters() == []  # reported once
        assert broker.dead_letter_count("q") == 1
    finally:
        broker.close()
