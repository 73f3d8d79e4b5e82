"""The executor's admission step and its record of what it did; a retry as one event."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from celeriac.errors import BrokerError, ConfigurationError, Retry, TaskRevokedError
from celeriac.hooks import DEFER, REVOKE, Admission, Hooks
from celeriac.sending import Producer
from celeriac.states import FAILURE, RETRY, REVOKED, SUCCESS


class Verdicts(Hooks):
    """Answers admit from a table of task name -> Admission; records what it was asked."""

    def __init__(self, answers: dict[str, Admission]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def admit(self, request):
        self.asked.append(request.task)
        return self.answers.get(request.task, super().admit(request))


def test_execute_returns_the_settlement_the_name_and_the_state(app, inline_worker):
    @app.task
    def ok():
        return 1

    @app.task
    def bad():
        raise ValueError("no")

    ok.delay()
    bad.delay()
    app.send_task("nobody.knows", ())
    worker = inline_worker(app)
    records = [worker.executor.execute(d) for d in worker.fetch()]
    assert [(r.settlement.action, r.name, r.state) for r in records] == [
        ("ack", ok.name, SUCCESS),
        ("ack", bad.name, FAILURE),
        ("settled", None, None),
    ]


def test_a_chunk_is_reported_under_its_inner_task_name(app, inline_worker):
    @app.task
    def add(x, y):
        return x + y

    add.chunks([(1, 2)], 1).apply_async()
    worker = inline_worker(app)
    [record] = [worker.executor.execute(d) for d in worker.fetch()]
    assert (record.name, record.state) == (f"{add.name} (chunks)", SUCCESS)


def test_a_hook_that_revokes_keeps_the_task_from_running_and_stores_revoked(app, inline_worker):
    ran: list[str] = []

    @app.task
    def charge():
        ran.append("charge")

    verdicts = Verdicts({charge.name: Admission(REVOKE, reason="revoked by an operator")})
    app.add_hooks(verdicts)
    result = charge.delay()
    worker = inline_worker(app)
    [record] = [worker.executor.execute(d) for d in worker.fetch()]
    assert (record.settlement.action, record.state) == ("ack", REVOKED)
    app.hooks.before_settle()
    assert ran == []
    assert verdicts.asked == [charge.name]
    assert result.state == REVOKED
    with pytest.raises(TaskRevokedError, match="revoked by an operator"):
        result.get(timeout=1)


def test_a_hook_that_defers_puts_the_message_back_until_then(app, inline_worker):
    ran: list[int] = []

    @app.task
    def report():
        ran.append(1)

    until = time.time() + 3600
    app.add_hooks(Verdicts({report.name: Admission(DEFER, until, "over its rate limit")}))
    report.delay()
    worker = inline_worker(app)
    settlement = worker.run_next()
    assert settlement.action == "ack"
    assert ran == []
    length = app.broker.queue_length("celery")
    assert (length.ready, length.scheduled, length.reserved) == (0, 1, 0)


def test_the_first_hook_that_does_not_admit_decides_and_a_failing_hook_admits(app, inline_worker):
    class Broken(Hooks):
        def admit(self, request):
            raise RuntimeError("broken hook")

    @app.task
    def job():
        return "ran"

    first = Verdicts({})
    second = Verdicts({job.name: Admission(REVOKE, reason="second says no")})
    third = Verdicts({job.name: Admission(DEFER, time.time() + 60, "third")})
    app.add_hooks(Broken())
    app.add_hooks(first)
    app.add_hooks(second)
    app.add_hooks(third)
    result = job.delay()
    inline_worker(app).run_next()
    assert (first.asked, second.asked, third.asked) == ([job.name], [job.name], [])
    assert result.state == REVOKED


def test_hooks_that_do_not_answer_admit_are_not_asked(app):
    class Quiet(Hooks):
        def before_task(self, request):
            pass

    app.add_hooks(Quiet())
    assert app.hooks._admitters == []


def test_a_retry_stores_retry_then_publishes_then_settles(app, inline_worker, monkeypatch):
    @app.task(bind=True, max_retries=1)
    def flaky(self):
        if self.request.retries == 0:
            raise self.retry(countdown=60)
        return "ok"

    result = flaky.delay()
    seen: list[str] = []
    publish = Producer.publish

    def spy(self, batch):
        seen.append(f"publish while {result.state}")
        publish(self, batch)

    monkeypatch.setattr(Producer, "publish", spy)
    worker = inline_worker(app)
    [delivery] = worker.fetch()
    record = worker.executor.execute(delivery)
    assert seen == ["publish while RETRY"]
    assert (record.settlement.action, record.state) == ("ack", RETRY)
    assert app.broker.queue_length("celery").scheduled == 1


def test_retry_with_throw_false_is_sent_at_once_and_the_task_goes_on(app, inline_worker):
    seen: list[tuple[str, int]] = []

    @app.task(bind=True)
    def soft(self):
        if self.request.retries == 0:
            returned = self.retry(countdown=0, throw=False)
            assert isinstance(returned, Retry)
            length = app.broker.queue_length("celery")
            seen.append((self.AsyncResult(self.request.id).state, length.ready))
            return "first"
        return "second"

    result = soft.delay()  # the second run's result does not replace the first's success
    worker = inline_worker(app)
    worker.run_next()
    assert seen == [(RETRY, 1)]  # stored and sent before the task went on
    assert result.get(timeout=1) == "first"  # then the task went on and returned
    worker.run_next()
    assert app.broker.queue_length("celery").total == 0  # the retry ran
    assert result.get(timeout=1) == "first"  # a success stands (as in Celery)


def test_a_retry_that_cannot_be_sent_fails_the_task(app, inline_worker, monkeypatch):
    @app.task(bind=True, max_retries=3)
    def flaky(self):
        raise self.retry(countdown=1)

    result = flaky.delay()

    def broken(self, batch):
        raise BrokerError("broker is down")

    monkeypatch.setattr(Producer, "publish", broken)
    inline_worker(app).run_next()
    assert result.state == FAILURE
    with pytest.raises(BrokerError, match="broker is down"):
        result.get(timeout=1)


def test_a_retry_raised_by_hand_stores_retry_and_sends_nothing(app, inline_worker):
    @app.task
    def manual():
        raise Retry("by hand")

    result = manual.delay()
    inline_worker(app).run_next()
    assert result.state == RETRY
    assert app.broker.queue_length("celery").total == 0


def test_retry_options_are_checked_in_the_task_when_it_asks(app, inline_worker):
    @app.task(bind=True)
    def typo(self):
        raise self.retry(contdown=1)

    result = typo.delay()
    inline_worker(app).run_next()
    assert result.state == FAILURE
    with pytest.raises(ConfigurationError, match="did you mean 'countdown'"):
        result.get(timeout=1)


def _counted(app):
    """A task that notes each run of it in the list returned beside it."""
    runs: list[int] = []

    @app.task
    def counted(n):
        runs.append(n)
        return n

    return counted, runs


def test_early_ack_does_not_run_again_a_redelivered_task_whose_result_is_ready(app, inline_worker):
    """RabbitMQ can undo an early ack (a broker restart before the ack reached its disk):
    the message comes back though its task ran. Its stored result shows that it ran."""
    once, runs = _counted(app)
    once.delay(1)
    worker = inline_worker(app)
    delivery = worker.fetch_one()
    worker.settle(delivery, worker.executor.execute(delivery).settlement)
    again = replace(delivery, deliveries=2)  # the same message, its ack undone
    record = worker.executor.execute(again)
    assert runs == [1]
    assert (record.settlement.action, record.state) == ("ack", None)
    assert app.AsyncResult(delivery.envelope.headers["id"]).get(timeout=1) == 1


def test_a_redelivery_whose_task_never_ran_still_runs(app, inline_worker):
    once, runs = _counted(app)
    once.delay(2)
    worker = inline_worker(app)
    delivery = replace(worker.fetch_one(), deliveries=2)  # its child died before starting it
    assert worker.executor.execute(delivery).state == SUCCESS
    assert runs == [2]


def test_late_ack_runs_a_redelivered_task_again_whatever_its_result(make_app, inline_worker):
    app = make_app(task_acks_late=True)
    again, runs = _counted(app)
    again.delay(3)
    worker = inline_worker(app)
    delivery = worker.fetch_one()
    worker.executor.execute(delivery)
    worker.executor.execute(replace(delivery, deliveries=2))
    assert runs == [3, 3]
