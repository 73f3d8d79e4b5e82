"""Executor: one delivery from the memory broker, decoded, run, classified and settled."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celeriac import Ignore, Reject, Task
from celeriac.brokers.base import DeadLetter, Outgoing
from celeriac.errors import DeadLetteredError, NotRegisteredError, TaskRevokedError
from celeriac.hooks import Hooks
from celeriac.protocol import Envelope, TaskMessage, encode
from celeriac.states import FAILURE, IGNORED, PENDING, REJECTED, REVOKED, STARTED, SUCCESS
from celeriac.worker.execute import ACK, REQUEUE, SETTLED
from celeriac.worker.slots import SlotTable


def publish_raw(app, envelope: Envelope, queue: str = "celery") -> None:
    app.broker.publish([Outgoing(queue, envelope)])


def raw_envelope(task: str = "proj.whatever", task_id: str = "raw-id", **fields: Any) -> Envelope:
    return encode(TaskMessage(id=task_id, task=task, **fields))


class Clock:
    """A broker clock the test moves by hand (leases and ETAs read it)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


# -- acknowledgement --------------------------------------------------------------------------


def test_success_stores_the_result_and_removes_the_message(app, inline_worker):
    @app.task
    def add(x, y):
        return x + y

    result = add.delay(2, 3)
    inline_worker(app).run_next()
    assert result.state == SUCCESS
    assert result.get(timeout=1) == 5
    assert app.broker.queue_length("celery").total == 0
    assert app.broker.dead_letter_count() == 0


def test_early_ack_message_cannot_be_delivered_again_while_the_task_runs(app, inline_worker, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(app.broker, "now", clock)
    seen: dict[str, Any] = {}

    @app.task
    def long_job():
        clock.now += 3600  # far past any lease
        seen["length"] = app.broker.queue_length("celery")
        seen["stolen"] = app.broker.fetch(["celery"], 10, 0, "another-child")

    long_job.delay()
    inline_worker(app).run_next()
    assert seen["stolen"] == []
    assert seen["length"].ready == 0
    assert seen["length"].reserved == 0
    assert app.broker.queue_length("celery").total == 0


def test_early_ack_drops_a_message_whose_lease_another_node_took_over(
    app, inline_worker, monkeypatch, caplog
):
    # the node stalled (a paused container) past its lease after prefetching the message
    clock = Clock()
    monkeypatch.setattr(app.broker, "now", clock)
    ran = []

    @app.task
    def job():
        ran.append(True)

    result = job.delay()
    worker = inline_worker(app)
    worker.executor.slot = SlotTable(1)[0]
    delivery = worker.fetch_one()
    clock.now += 3600
    (taken,) = app.broker.fetch(["celery"], 1, 0, "another-node/1")
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        executed = worker.executor.execute(delivery)
    assert ran == []
    assert executed.state is None and executed.settlement.action == SETTLED
    assert worker.executor.slot.read().running is False
    assert result.state == PENDING
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert result.id in warning.getMessage() and "lost the lease" in warning.getMessage()
    # the node that took it over runs it, once
    assert app.broker.mark_started([taken]) == []
    assert app.broker.queue_length("celery").running == 1


def test_late_ack_message_stays_leased_while_the_task_runs_and_is_acked_after(make_app, inline_worker):
    app = make_app(task_acks_late=True)
    seen: dict[str, Any] = {}

    @app.task
    def job():
        seen["length"] = app.broker.queue_length("celery")
        return "done"

    job.delay()
    worker = inline_worker(app)
    delivery = worker.fetch_one()
    settlement = worker.executor.execute(delivery).settlement
    assert seen["length"].reserved == 1
    assert settlement.action == ACK
    assert app.broker.queue_length("celery").reserved == 1  # not acked until settled
    worker.settle(delivery, settlement)
    assert app.broker.queue_length("celery").total == 0


def test_late_ack_message_is_delivered_again_when_its_lease_runs_out(make_app, inline_worker, monkeypatch):
    app = make_app(task_acks_late=True)
    clock = Clock()
    monkeypatch.setattr(app.broker, "now", clock)
    seen: dict[str, Any] = {}

    @app.task
    def job():
        clock.now += 3600
        seen["stolen"] = app.broker.fetch(["celery"], 10, 0, "another-child")

    result = job.delay()
    inline_worker(app).run_next()
    assert [d.envelope.headers["id"] for d in seen["stolen"]] == [result.id]
    assert seen["stolen"][0].deliveries == 2


def test_task_acks_late_option_overrides_the_setting(app, inline_worker):
    seen: dict[str, Any] = {}

    @app.task(acks_late=True)
    def job():
        seen["length"] = app.broker.queue_length("celery")

    job.delay()
    inline_worker(app).run_next()
    assert seen["length"].reserved == 1


# -- failures ---------------------------------------------------------------------------------


def test_failure_stores_failure_with_the_traceback(app, inline_worker):
    @app.task
    def divide(x, y):
        return x / y

    result = divide.delay(1, 0)
    inline_worker(app).run_next()
    assert result.state == FAILURE
    assert isinstance(result.result, ZeroDivisionError)
    assert "ZeroDivisionError" in result.traceback
    assert "in divide" in result.traceback
    with pytest.raises(ZeroDivisionError):
        result.get(timeout=1)
    assert app.broker.queue_length("celery").total == 0
    assert app.broker.dead_letter_count() == 0


def test_failure_is_logged_with_task_name_and_id(app, inline_worker, caplog):
    @app.task
    def broken():
        raise LookupError("no such row")

    result = broken.delay()
    with caplog.at_level(logging.ERROR, logger="celeriac.worker"):
        inline_worker(app).run_next()
    messages = [r.getMessage() for r in caplog.records]
    assert any(broken.name in m and result.id in m and "no such row" in m for m in messages)


def test_late_ack_failure_is_dead_lettered_when_acks_on_failure_is_off(make_app, inline_worker):
    app = make_app(task_acks_late=True, task_acks_on_failure_or_timeout=False)

    @app.task
    def broken():
        raise ValueError("bad row 7")

    result = broken.delay()
    inline_worker(app).run_next()
    [letter] = app.broker.dead_letters()
    assert "ValueError" in letter.reason and "bad row 7" in letter.reason
    assert letter.envelope.headers["id"] == result.id
    assert app.broker.queue_length("celery").total == 0
    assert result.state == FAILURE


def test_system_exit_in_a_task_is_a_failure_not_a_dead_worker(app, inline_worker):
    @app.task
    def quits():
        raise SystemExit(3)

    @app.task
    def after():
        return "still running"

    bad, good = quits.delay(), after.delay()
    worker = inline_worker(app)
    worker.run_next()
    worker.run_next()
    assert bad.state == FAILURE
    assert good.get(timeout=1) == "still running"


# -- bad input --------------------------------------------------------------------------------


def test_a_celery_chord_unlock_is_dead_lettered_saying_why_and_what_to_do(app, inline_worker):
    app.send_task("celery.chord_unlock", ["group-id"], {"result": [], "interval": 1})
    inline_worker(app).run_next()
    [letter] = app.broker.dead_letters()
    assert letter.reason.startswith("unknown task 'celery.chord_unlock'")
    assert "send the chord from celeriac, or from Celery with a Redis result backend" in letter.reason


def test_unknown_task_is_dead_lettered_and_recorded_as_not_registered(app, inline_worker):
    @app.task
    def known():
        return 1

    result = app.send_task("proj.missing", [1])
    follow_up = known.delay()
    worker = inline_worker(app)
    worker.run_next()
    worker.run_next()

    [letter] = app.broker.dead_letters()
    assert "unknown task 'proj.missing'" in letter.reason
    assert known.name in letter.reason  # what the worker does know
    assert letter.queue == "celery"
    assert result.state == FAILURE
    with pytest.raises(NotRegisteredError, match="proj.missing"):
        result.get(timeout=1)
    assert follow_up.get(timeout=1) == 1  # the worker went on


def test_undecodable_message_is_dead_lettered_with_the_reason_and_recorded(app, inline_worker):
    envelope = dataclasses.replace(raw_envelope(task_id="garbled-id"), body=b"\x00not json")
    publish_raw(app, envelope)
    inline_worker(app).run_next()
    [letter] = app.broker.dead_letters()
    assert "cannot decode" in letter.reason
    assert app.broker.queue_length("celery").total == 0
    result = app.AsyncResult("garbled-id")
    assert result.state == FAILURE
    with pytest.raises(DeadLetteredError, match="cannot decode"):
        result.get(timeout=1)


def test_dead_letters_a_fetch_made_are_logged_and_fail_the_results_they_name(app, inline_worker, caplog):
    named = raw_envelope(task_id="p-1")
    unreadable = Envelope(b"\x00?", "application/x-unreadable", "binary", {}, {})
    letters = [
        DeadLetter("", "celery", "delivered 5 times without being settled", named, 0, 5),
        DeadLetter("", "celery", "not a kombu message (not JSON)", unreadable, 0, 1),
    ]
    with caplog.at_level(logging.ERROR, logger="celeriac.worker"):
        inline_worker(app).executor.report_dead_letters(letters)
    assert [r.getMessage() for r in caplog.records] == [
        "task proj.whatever[p-1] on queue 'celery' dead-lettered: delivered 5 times without being settled",
        "a message on queue 'celery' dead-lettered: not a kombu message (not JSON)",
    ]
    with pytest.raises(DeadLetteredError, match="5 times"):
        app.AsyncResult("p-1").get(timeout=1)


def test_message_without_a_readable_id_is_dead_lettered_without_a_result(app, inline_worker):
    envelope = raw_envelope()
    publish_raw(app, dataclasses.replace(envelope, headers={**envelope.headers, "id": 12345}))
    inline_worker(app).run_next()
    [letter] = app.broker.dead_letters()
    assert "header 'id'" in letter.reason
    assert app.AsyncResult("12345").state == PENDING


def test_bad_header_is_dead_lettered_with_the_reason(app, inline_worker):
    @app.task(name="proj.whatever")
    def whatever():
        return None

    envelope = raw_envelope(task_id="bad-retries")
    publish_raw(app, dataclasses.replace(envelope, headers={**envelope.headers, "retries": "many"}))
    inline_worker(app).run_next()
    assert "'retries'" in app.broker.dead_letters()[0].reason
    assert app.AsyncResult("bad-retries").state == FAILURE


def test_message_over_the_worker_size_limit_is_dead_lettered(make_app, inline_worker):
    app = make_app(task_message_max_bytes=64)

    @app.task(name="proj.whatever")
    def whatever(blob):
        return len(blob)

    publish_raw(app, raw_envelope(task_id="big-id", args=("x" * 500,)))
    inline_worker(app).run_next()
    [letter] = app.broker.dead_letters()
    assert "task_message_max_bytes=64" in letter.reason
    assert app.AsyncResult("big-id").state == FAILURE


def test_pickle_message_is_dead_lettered_when_not_accepted(app, inline_worker):
    @app.task(name="proj.whatever")
    def whatever():
        return None

    publish_raw(app, raw_envelope(task_id="pickled", content_type="application/x-python-serialize"))
    inline_worker(app).run_next()
    assert "accept_content" in app.broker.dead_letters()[0].reason


def test_dead_letter_hook_sees_reason_id_name_and_queue(app, inline_worker):
    seen = []

    class Watch(Hooks):
        def after_dead_letter(self, dead):
            seen.append(dead)

    app.add_hooks(Watch())
    app.send_task("proj.gone", queue="work")
    inline_worker(app).run_next(["work"])
    [dead] = seen
    assert dead.task_name == "proj.gone"
    assert dead.queue == "work"
    assert dead.reason.startswith("unknown task 'proj.gone'")


# -- expiry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("acks_late", [False, True])
def test_expired_message_is_revoked_and_not_run(make_app, inline_worker, acks_late):
    app = make_app(task_acks_late=acks_late)
    ran: list[bool] = []

    @app.task
    def job():
        ran.append(True)

    result = job.apply_async(expires=datetime.now(UTC) - timedelta(seconds=1))
    inline_worker(app).run_next()
    assert ran == []
    assert result.state == REVOKED
    assert result.ready()
    assert app.broker.queue_length("celery").total == 0
    assert app.broker.dead_letter_count() == 0


def test_get_on_an_expired_task_raises_task_revoked_error(app, inline_worker):
    @app.task
    def job():
        return "ran"

    result = job.apply_async(expires=datetime.now(UTC) - timedelta(seconds=1))
    inline_worker(app).run_next()
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=1)


def test_message_not_yet_expired_runs(app, inline_worker):
    @app.task
    def job():
        return "ran"

    result = job.apply_async(expires=3600)
    inline_worker(app).run_next()
    assert result.get(timeout=1) == "ran"


# -- Reject and Ignore ------------------------------------------------------------------------


def test_reject_without_requeue_with_acks_late_dead_letters(make_app, inline_worker):
    app = make_app(task_acks_late=True)

    @app.task
    def picky():
        raise Reject("malformed invoice", requeue=False)

    result = picky.delay()
    inline_worker(app).run_next()
    [letter] = app.broker.dead_letters()
    assert letter.reason == "rejected by the task: malformed invoice"
    assert letter.envelope.headers["id"] == result.id
    assert app.broker.queue_length("celery").total == 0
    assert result.state == FAILURE  # recorded like any dead letter
    with pytest.raises(DeadLetteredError, match="malformed invoice"):
        result.get(timeout=1)


def test_reject_with_requeue_and_acks_late_puts_the_message_back(make_app, inline_worker):
    app = make_app(task_acks_late=True)
    runs: list[int] = []

    @app.task(bind=True)
    def not_now(self):
        runs.append(1)
        if len(runs) == 1:
            raise Reject("busy", requeue=True)
        return "second time"

    result = not_now.delay()
    worker = inline_worker(app)
    assert worker.run_next().action == REQUEUE
    assert app.broker.queue_length("celery").ready == 1
    worker.run_next()
    assert result.get(timeout=1) == "second time"
    assert app.broker.dead_letter_count() == 0


def test_celerys_redelivered_pattern_runs_the_task_twice(make_app, inline_worker):
    app = make_app(task_acks_late=True)
    seen: list[bool] = []

    @app.task(bind=True)
    def once_more(self):
        redelivered = self.request.delivery_info.get("redelivered")
        seen.append(redelivered)
        if redelivered:
            raise Reject("no reason", requeue=False)
        raise Reject("no reason", requeue=True)

    result = once_more.delay()
    worker = inline_worker(app)
    assert worker.run_next().action == REQUEUE
    worker.run_next()
    assert seen == [False, True]
    assert app.broker.queue_length("celery").total == 0
    [letter] = app.broker.dead_letters()
    assert letter.reason == "rejected by the task: no reason"
    assert result.state == FAILURE


def test_a_task_that_always_requeues_is_dead_lettered_at_the_delivery_limit(make_app, inline_worker, caplog):
    app = make_app(task_acks_late=True, task_delivery_limit=3)
    runs: list[int] = []

    @app.task
    def forever():
        runs.append(1)
        raise Reject("not yet", requeue=True)

    result = forever.delay()
    worker = inline_worker(app)
    assert [worker.run_next().action for _ in range(2)] == [REQUEUE, REQUEUE]
    with caplog.at_level(logging.ERROR, logger="celeriac.worker"):
        assert worker.run_next().action == SETTLED
    assert len(runs) == 3
    assert app.broker.queue_length("celery").total == 0
    [letter] = app.broker.dead_letters()
    assert "requeued 3 times" in letter.reason and "task_delivery_limit=3" in letter.reason
    assert any(letter.reason in r.getMessage() for r in caplog.records)
    assert result.state == FAILURE  # the result says why, not PENDING for ever
    with pytest.raises(DeadLetteredError, match="task_delivery_limit=3"):
        result.get(timeout=1)


@pytest.mark.parametrize("requeue", [False, True])
def test_reject_with_early_ack_is_a_failure_holding_the_reject_never_pending(
    app, inline_worker, caplog, requeue
):
    """The message was acked before the task ran: nothing is left to dead-letter or requeue, so
    the run is recorded as a FAILURE holding the Reject (as Celery 5.7 does), with a warning."""

    @app.task
    def picky():
        raise Reject("too late", requeue=requeue)

    result = picky.delay()
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        inline_worker(app).run_next()
    assert app.broker.dead_letter_count() == 0
    assert app.broker.queue_length("celery").total == 0
    assert any("task_acks_late is off" in r.getMessage() for r in caplog.records)
    assert result.state == FAILURE
    with pytest.raises(Reject, match="too late"):
        result.get(timeout=1)


@pytest.mark.parametrize("acks_late", [False, True])
def test_ignore_acks_and_records_nothing(make_app, inline_worker, acks_late):
    app = make_app(task_acks_late=acks_late)

    @app.task
    def skip():
        raise Ignore()

    result = skip.delay()
    inline_worker(app).run_next()
    assert result.state == PENDING
    assert app.backend.get(result.id) is None
    assert app.broker.queue_length("celery").total == 0
    assert app.broker.dead_letter_count() == 0


def test_ignore_is_logged_as_celery_logs_it(app, inline_worker, caplog):
    @app.task
    def skip():
        raise Ignore()

    result = skip.delay()
    with caplog.at_level(logging.INFO, logger="celeriac.worker"):
        inline_worker(app).run_next()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("celeriac.worker")] == [
        f"Task {skip.name}[{result.id}] ignored"
    ]


# -- handlers, hooks and the request ----------------------------------------------------------


class RecordingTask(Task):
    calls: list[tuple[Any, ...]] = []

    def on_success(self, retval, task_id, args, kwargs):
        self.calls.append(("on_success", retval, task_id, tuple(args), dict(kwargs)))

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_failure", type(exc).__name__, task_id, tuple(args), einfo))

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        self.calls.append(("after_return", status, retval if status == SUCCESS else type(retval).__name__))


@pytest.fixture
def recording():
    RecordingTask.calls = []
    yield RecordingTask.calls
    RecordingTask.calls = []


def test_on_success_and_after_return_are_called(app, inline_worker, recording):
    @app.task(base=RecordingTask)
    def add(x, y):
        return x + y

    result = add.apply_async((2, 3), {})
    inline_worker(app).run_next()
    assert recording == [
        ("on_success", 5, result.id, (2, 3), {}),
        ("after_return", SUCCESS, 5),
    ]


def test_on_failure_and_after_return_are_called_with_the_traceback(app, inline_worker, recording):
    @app.task(base=RecordingTask)
    def fail(x):
        raise KeyError(x)

    result = fail.delay("k")
    inline_worker(app).run_next()
    (name, exc_name, task_id, args, einfo), after = recording
    assert (name, exc_name, task_id, args) == ("on_failure", "KeyError", result.id, ("k",))
    assert "KeyError" in str(einfo)
    assert after == ("after_return", FAILURE, "KeyError")


def test_failing_handler_is_logged_and_does_not_change_the_outcome(app, inline_worker, caplog):
    class BrokenHandler(Task):
        def on_success(self, retval, task_id, args, kwargs):
            raise RuntimeError("handler bug")

    @app.task(base=BrokenHandler)
    def job():
        return "fine"

    result = job.delay()
    with caplog.at_level(logging.ERROR, logger="celeriac.worker"):
        inline_worker(app).run_next()
    assert result.get(timeout=1) == "fine"
    assert any("handler of" in r.getMessage() for r in caplog.records)


def test_hooks_see_the_request_before_and_the_outcome_after(app, inline_worker):
    events: list[tuple[str, Any]] = []

    class Watch(Hooks):
        def before_task(self, request):
            events.append(("before", request.id))

        def after_task(self, request, outcome):
            events.append(("after", outcome.state))

    app.add_hooks(Watch())

    @app.task
    def job():
        return 1

    @app.task
    def skip():
        raise Ignore()

    first, _ = job.delay(), skip.delay()
    worker = inline_worker(app)
    worker.run_next()
    worker.run_next()
    assert events[0] == ("before", first.id)
    assert [e for e in events if e[0] == "after"] == [("after", SUCCESS), ("after", IGNORED)]


def test_rejected_outcome_reaches_the_hooks(make_app, inline_worker):
    app = make_app(task_acks_late=True)
    states: list[str] = []

    class Watch(Hooks):
        def after_task(self, request, outcome):
            states.append(outcome.state)

    app.add_hooks(Watch())

    @app.task
    def picky():
        raise Reject("no")

    picky.delay()
    inline_worker(app).run_next()
    assert states == [REJECTED]


def test_request_inside_the_task(app, inline_worker):
    seen: dict[str, Any] = {}

    @app.task(bind=True)
    def job(self, a, b=None):
        request = self.request
        seen.update(
            id=request.id,
            args=list(request.args),
            kwargs=dict(request.kwargs),
            retries=request.retries,
            hostname=request.hostname,
            queue=request.delivery_info["queue"],
            called_directly=request.called_directly,
            is_eager=request.is_eager,
            timelimit=request.timelimit,
        )

    result = job.apply_async((1,), {"b": 2}, queue="work", time_limit=30, soft_time_limit=10)
    inline_worker(app, hostname="node-1@host").run_next(["work"])
    assert seen == {
        "id": result.id,
        "args": [1],
        "kwargs": {"b": 2},
        "retries": 0,
        "hostname": "node-1@host",
        "queue": "work",
        "called_directly": False,
        "is_eager": False,
        "timelimit": (30.0, 10.0),
    }
    assert job.request.called_directly is True  # the request does not leak out of the run


def test_time_limits_default_to_the_task_options_then_the_settings(make_app, inline_worker):
    app = make_app(task_time_limit=100, task_soft_time_limit=50)
    seen: list[tuple] = []

    @app.task(bind=True, soft_time_limit=5)
    def job(self):
        seen.append(self.request.timelimit)

    job.delay()
    inline_worker(app).run_next()
    assert seen == [(100.0, 5.0)]


def test_track_started_stores_started_while_running(make_app, inline_worker):
    app = make_app(task_track_started=True)
    seen: list[str] = []

    @app.task(bind=True)
    def job(self):
        seen.append(app.AsyncResult(self.request.id).state)
        return "ok"

    result = job.delay()
    inline_worker(app).run_next()
    assert seen == [STARTED]
    assert result.state == SUCCESS


def test_ignore_result_stores_nothing(app, inline_worker):
    @app.task(ignore_result=True)
    def quiet():
        return 1

    result = quiet.delay()
    inline_worker(app).run_next()
    assert result.state == PENDING
    assert app.broker.queue_length("celery").total == 0


def test_executor_records_the_running_task_in_its_slot(app, inline_worker):
    table = SlotTable(1)
    seen = []

    @app.task(acks_late=True)
    def job():
        seen.append(table[0].read())

    result = job.apply_async(time_limit=60)
    worker = inline_worker(app)
    worker.executor.slot = table[0]
    worker.run_next()
    [during] = seen
    assert during.running is True
    assert during.task_id == result.id
    assert during.name == job.name
    assert during.acks_late is True
    assert during.hard_deadline > during.started
    after = table[0].read()
    assert (after.running, after.done, after.failed) == (False, 1, 0)


def test_message_that_arrives_before_its_eta_is_scheduled_again_not_run(app, inline_worker):
    ran = []

    @app.task(name="proj.later")
    def later():
        ran.append(True)

    eta = datetime.now(UTC) + timedelta(seconds=60)
    # a producer that does not schedule on the broker (e.g. Celery on Redis) sends it at once
    app.broker.publish([Outgoing("celery", encode(TaskMessage(id="early-1", task="proj.later", eta=eta)))])
    worker = inline_worker(app)
    assert worker.run_next().action == ACK
    assert ran == []
    length = app.broker.queue_length("celery")
    assert (length.ready, length.scheduled) == (0, 1)
