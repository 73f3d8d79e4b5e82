"""The monitor's history file: one written by an older version opens, keeps its rows, and gains the
per-sample rate columns; rolled-up rows hold the mean of the rates."""

from __future__ import annotations

import sqlite3

import pytest

from celeriac.observe.history import History, QueuePoint

#: ``samples`` as released before the arrival and service rates were stored
OLD_SAMPLES = """CREATE TABLE samples (
    tier INTEGER NOT NULL, t REAL NOT NULL, queue TEXT NOT NULL,
    ready INTEGER NOT NULL, scheduled INTEGER NOT NULL, reserved INTEGER NOT NULL,
    running INTEGER NOT NULL, oldest_age REAL,
    finished INTEGER, failed INTEGER, busy_s REAL, arrived INTEGER,
    p50 REAL, p95 REAL, p99 REAL,
    PRIMARY KEY (tier, t, queue)) WITHOUT ROWID"""

HOUR = 1_800_000_000.0 - 1_800_000_000.0 % 3600


def old_file(path) -> None:
    db = sqlite3.connect(path)
    db.execute(OLD_SAMPLES)
    db.execute("CREATE INDEX samples_by_queue ON samples(tier, queue, t)")
    db.execute(
        "INSERT INTO samples VALUES (0, ?, 'q', 3, 0, 1, 0, 2.5, 100, 4, 5.0, 104, 0.01, 0.02, 0.03)",
        (HOUR - 120,),
    )
    db.commit()
    db.close()


def point(t: float, arrival: float | None, service: float | None) -> QueuePoint:
    return QueuePoint(
        t, "q", 1, 0, 0, 0, finished=200, arrived=201, arrival_rate=arrival, service_rate=service
    )


def test_an_older_file_gains_the_rate_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "h.db"
    old_file(path)
    history = History(path)
    (old,) = history.points(HOUR - 200, HOUR - 100, "q")
    assert (old.ready, old.reserved, old.finished, old.arrived, old.p99) == (3, 1, 100, 104, 0.03)
    assert (old.arrival_rate, old.service_rate) == (None, None)
    assert history.latest()["q"].finished == 100  # counters carry on from the old rows
    history.add([point(HOUR, 12.5, 10.0)])
    assert history.points(HOUR, HOUR, "q") == [point(HOUR, 12.5, 10.0)]
    history.close()
    again = History(path)  # opened again: the columns are there, nothing to add
    assert [p.arrival_rate for p in again.points(HOUR - 200, HOUR, "q")] == [None, 12.5]
    again.close()


def test_a_minute_row_holds_the_mean_of_its_samples_rates(tmp_path):
    history = History(tmp_path / "h.db")
    rates = [(12.0, 10.0), (None, None), (18.0, 20.0), (30.0, 30.0), (24.0, 40.0), (36.0, 50.0)]
    for i, (arrival, service) in enumerate(rates):  # a sample every 10 s of one minute
        history.add([point(HOUR + 10 * i, arrival, service)])
    history.add([point(HOUR + 60, 100.0, 100.0)])  # the next minute: the first one is rolled up
    minutes = history.points(HOUR, HOUR + 7 * 3600, "q")  # > 6 h: the minute tier
    assert [(p.t, p.arrival_rate, p.service_rate) for p in minutes] == [
        (HOUR, pytest.approx(24.0), pytest.approx(30.0))  # a sample without rates does not count
    ]
    history.close()
