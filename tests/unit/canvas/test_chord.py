"""``chord``: Celery's wire form (the body in every member's embed), the body sent once with
the header's results in order, a redelivered member counted once, a failed member failing the
body with ChordError and its errbacks run once, chords in chains, eager mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from celeriac import chain, chord, group
from celeriac.canvas.hooks import chord_part_done
from celeriac.errors import ChordError, ConfigurationError
from celeriac.hooks import Outcome
from celeriac.states import SUCCESS
from tests.unit.canvas.conftest import drain, peek


def test_every_member_carries_the_body_the_group_id_and_its_index(app, tasks):
    add, record = tasks["add"], tasks["record"]
    result = chord([add.s(1, 1), add.s(2, 2)], record.s("tail")).apply_async()
    members = peek(app)
    assert [m.group_index for m in members] == [0, 1]
    assert {m.group for m in members} == {result.parent.id}
    body = members[0].embed["chord"]
    assert body["task"] == "t.record" and body["chord_size"] == 2
    assert body["options"]["task_id"] == result.id
    assert [r.id for r in result.parent.results] == [m.id for m in members]


def test_the_body_runs_once_with_the_results_in_order(app, tasks, calls, inline_worker):
    add, record = tasks["add"], tasks["record"]
    result = chord(add.s(i, i) for i in range(5))(record.s("tail"))
    worker = inline_worker(app)
    deliveries = worker.fetch()
    for delivery in reversed(deliveries):  # finishing out of order: the body still gets index order
        worker.run(delivery)
    assert drain(worker) == 1
    assert result.get(timeout=1) == [[0, 2, 4, 6, 8], "tail"]
    assert [c for c in calls if c[0] == "record"] == [("record", [0, 2, 4, 6, 8], "tail")]


def test_group_or_task_and_a_chain_with_a_group_are_chords(app, tasks, inline_worker):
    add, record = tasks["add"], tasks["record"]
    assert isinstance(group(add.s(1, 1)) | record.s(), chord)
    piped = (group(add.s(1, 1), add.s(2, 2)) | record.s()).apply_async()
    nested = chain(add.s(1, 1), group(add.s(10), add.s(20)), record.s(), add.s([0])).apply_async()
    drain(inline_worker(app))
    assert piped.get(timeout=1) == [[2, 4]]
    assert nested.get(timeout=1) == [[12, 22], 0]  # chord in a chain; the step after it joins its body


def test_a_chain_as_the_body_gets_the_results(app, tasks, inline_worker):
    add, record = tasks["add"], tasks["record"]
    result = chord([add.s(1, 1), add.s(2, 2)], record.s() | record.s("x")).apply_async()
    drain(inline_worker(app))
    assert result.get(timeout=1) == [[[2, 4]], "x"]


def test_a_member_delivered_again_after_its_result_was_stored_counts_once(app, tasks, calls, inline_worker):
    app.conf.task_acks_late = True  # a redelivered member runs again
    add, record = tasks["add"], tasks["record"]
    result = chord([add.s(1, 1), add.s(2, 2), add.s(3, 3)], record.s()).apply_async()
    worker = inline_worker(app)
    first, second, third = worker.fetch()
    worker.executor.execute(first)
    worker.hooks.before_settle()  # its result stored and counted, then its ack lost
    app.broker.reject([first], requeue=True)
    worker.run(worker.fetch_one())
    assert [c for c in calls if c[0] == "add"] == [("add", 1, 1), ("add", 1, 1)]
    worker.run(second)
    assert peek(app) == []  # 2 of 3 distinct members: no body yet
    worker.run(third)
    drain(worker)
    assert result.get(timeout=1) == [[2, 4, 6]]


def test_two_workers_completing_the_last_member_at_once_send_the_body_once(app, tasks, calls, inline_worker):
    add, record = tasks["add"], tasks["record"]
    result = chord([add.s(1, 1), add.s(2, 2)], record.s()).apply_async()
    worker = inline_worker(app)
    worker.run_next()
    last = worker.fetch_one()
    worker.run(last)
    request = worker.executor._request(
        *worker.executor._resolve(last), worker.executor.policy(tasks["add"]), last
    )
    chord_part_done(app, request, Outcome(SUCCESS, 4))  # the other worker's call
    assert [m.task for m in peek(app)] == ["t.record"]
    assert app.store.get(f"chord:{result.parent.id}:done") == b"fired"


def test_a_failed_member_fails_the_body_with_chord_error_and_its_errbacks_run_once(
    app, tasks, calls, inline_worker
):
    add, fail, record, old, new = (tasks[k] for k in ("add", "fail", "record", "old_errback", "new_errback"))
    body = record.s()
    body.link_error(old.s())
    body.link_error(new.s(tag="body"))
    result = chord([fail.s(), add.s(1, 1), fail.s()], body).apply_async()
    drain(inline_worker(app))
    with pytest.raises(ChordError, match=r"Dependency .* raised ValueError"):
        result.get(timeout=1)
    assert not [c for c in calls if c[0] == "record"]
    assert [c[:2] for c in calls if c[0] == "old_errback"] == [("old_errback", result.id)]
    assert [(c[0], c[1], c[4]) for c in calls if c[0] == "new_errback"] == [
        ("new_errback", result.id, "body")
    ]


def test_a_chord_needs_a_result_backend(make_app):
    app = make_app(broker="amqp://guest:guest@127.0.0.1:5672//", backend=None)

    @app.task(name="t.add")
    def add(x, y):
        return x + y

    with pytest.raises(ConfigurationError, match="result_backend"):
        chord([add.s(1, 1)], add.s(1)).apply_async()


def test_eager_runs_the_chord_here_with_the_same_results(make_app, calls):
    app = make_app(task_always_eager=True)

    @app.task(name="t.add")
    def add(x, y):
        return x + y

    @app.task(name="t.total")
    def total(values):
        return sum(values)

    @app.task(name="t.fail")
    def fail(*args):
        raise ValueError("boom")

    @app.task(name="t.errback")
    def errback(task_id):
        calls.append(task_id)

    assert chord(add.s(i, i) for i in range(4))(total.s()).get() == 12
    body = total.s()
    body.link_error(errback.s())
    failed = chord([add.s(1, 1), fail.s()], body).apply_async()
    assert failed.failed() and isinstance(failed.result, ChordError)
    assert calls == [failed.id]
    assert app.broker.queue_length("celery").total == 0


def test_a_member_revoked_before_it_runs_fails_the_body(app, tasks, calls, inline_worker):
    add, record = tasks["add"], tasks["record"]
    expired = add.s(1, 1).set(expires=datetime.now(UTC) - timedelta(seconds=5))
    result = chord([expired, add.s(2, 2)], record.s()).apply_async()
    drain(inline_worker(app))
    with pytest.raises(ChordError, match="expired"):
        result.get(timeout=1)
    assert not [c for c in calls if c[0] == "record"]
