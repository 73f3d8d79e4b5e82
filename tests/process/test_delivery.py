"""Delivery guarantees with real worker processes: kills, poison messages, bad input, volume."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3

import pytest

from celeriac.brokers.base import Outgoing
from celeriac.errors import NotRegisteredError, WorkerLostError
from celeriac.protocol.message import Envelope
from tests.process.harness import wait_until

pytestmark = pytest.mark.process


def test_acks_late_task_of_a_killed_child_runs_again_and_completes(app, workers, runs):
    worker = workers("-c", "1", CELERIAC_TASK_ACKS_LATE="true").wait_ready(1)
    result = app.send_task("block", ["victim"])
    runs.wait(1, "victim")
    (child_pid,) = runs.pids("victim")
    os.kill(child_pid, signal.SIGKILL)
    assert result.get(timeout=20) == "second delivery"
    assert runs.count("victim") == 2
    assert runs.pids("victim")[1] != child_pid
    worker.wait_for(rf"pid {child_pid}\) exited .*killed by signal 9.*will run again")


def test_early_ack_task_of_a_killed_child_is_recorded_as_lost_not_rerun(app, workers, runs):
    worker = workers("-c", "1").wait_ready(1)
    result = app.send_task("block", ["victim"])
    runs.wait(1, "victim")
    os.kill(runs.pids("victim")[0], signal.SIGKILL)
    with pytest.raises(WorkerLostError, match="killed by signal 9"):
        result.get(timeout=20)
    worker.wait_for(r"child 0 \(pid \d+\) ready", count=2)  # the replacement is serving
    assert app.send_task("run", ["after"]).get(timeout=20)
    assert runs.count("victim") == 1


def test_early_ack_task_whose_child_dies_after_it_returned_is_not_left_pending(app, workers, runs):
    # the child dies after the task returned, before the batch that would write its result
    worker = workers("-c", "1").wait_ready(1)
    result = app.send_task("die_after_return", ["returned"])
    with pytest.raises(WorkerLostError, match="after the task ended, before its result was stored"):
        result.get(timeout=20)
    worker.wait_for(rf"killed by signal 9.*die_after_return\[{result.id}\]")
    worker.wait_for(r"child 0 \(pid \d+\) ready", count=2)  # the replacement is serving
    assert app.send_task("run", ["after"]).get(timeout=20)
    assert runs.count("returned") == 1  # early ack: not run again


def test_poison_message_goes_to_dead_letters_after_the_delivery_limit(app, workers, runs):
    worker = workers("-c", "1", CELERIAC_TASK_DELIVERY_LIMIT="3").wait_ready(1)
    poison = app.send_task("crash", ["poison"])
    wait_until(lambda: app.broker.dead_letter_count() == 1, 30, "the poison message in the dead letters")
    assert runs.count("poison") == 3
    (letter,) = app.broker.dead_letters()
    assert "killed by signal 9" in letter.reason and letter.deliveries == 3
    # the master moves the message first, then stores the failure: the two are not one transaction
    wait_until(lambda: poison.state == "FAILURE", 10, "the poison task's result marked FAILURE")
    assert app.send_task("run", ["healthy"]).get(timeout=20)
    worker.wait_for(r"went to the dead letters")


def test_bad_messages_are_dead_lettered_with_reasons_and_the_worker_goes_on(app, workers, runs):
    workers("-c", "1").wait_ready(1)
    garbage = Envelope(b"\x00not json", "application/json", "utf-8", {"task": "run", "id": "bad-1"}, {})
    pickled = Envelope(
        b"\x80\x04K\x01.", "application/x-python-serialize", "binary", {"task": "run", "id": "bad-2"}, {}
    )
    app.broker.publish([Outgoing("celery", garbage), Outgoing("celery", pickled)])
    unknown = app.send_task("no.such.task", [1])
    assert app.send_task("run", ["good"]).get(timeout=20)
    wait_until(lambda: app.broker.dead_letter_count() == 3, 20, "three dead letters")
    reasons = sorted(letter.reason for letter in app.broker.dead_letters())
    assert any("cannot decode" in r for r in reasons), reasons
    assert any("not accepted" in r and "pickle" in r for r in reasons), reasons
    assert any("unknown task 'no.such.task'" in r for r in reasons), reasons
    with pytest.raises(NotRegisteredError, match="no.such.task"):
        unknown.get(timeout=10)
    assert app.AsyncResult("bad-1").state == "FAILURE"


def test_ten_thousand_tasks_through_two_children_each_run_once(app, workers, runs):
    results = []
    for start in range(0, 10_000, 1000):
        results += app.tasks["run"].apply_many([(f"t{i}",) for i in range(start, start + 1000)])
    worker = workers("-c", "2").wait_ready(2)
    runs.wait(10_000, timeout=120)
    counts = runs.per_label()
    assert len(counts) == 10_000 and set(counts.values()) == {1}
    pids = {pid for _, pid, _ in runs.entries()}
    assert len(pids) == 2, "both children took part"
    for result in results:
        assert result.get(timeout=30) in pids
    assert "exited" not in worker.log()


def test_unreadable_row_ahead_of_a_task_is_dead_lettered_and_the_task_runs(app, env, workers, runs):
    """A row another program wrote with an envelope that is not JSON, first in the queue."""
    path = env["CELERIAC_BROKER_URL"].removeprefix("sqlite:///")
    result = app.send_task("run", ["behind"])
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        # placed ahead of the task: a lower id than any row the broker wrote
        conn.execute(
            "INSERT INTO messages (id, queue, state, priority, published_at, meta, body) "
            "VALUES (0, 'celery', 0, 0, 0, '{not json', '[[], {}, {}]')"
        )
    worker = workers("-c", "1").wait_ready(1)
    assert result.get(timeout=10)
    (letter,) = app.broker.dead_letters()
    assert "is not valid JSON" in letter.reason
    assert len(re.findall(r"child \d+ \(pid \d+\) exited", worker.log())) <= 2
