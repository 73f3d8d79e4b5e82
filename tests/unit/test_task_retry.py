"""Retries inside a worker run: the same task id is sent again with retries + 1 and an ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from celeriac.errors import MaxRetriesExceededError
from celeriac.protocol import TaskMessage, decode
from celeriac.protocol.serializers import JSON
from celeriac.states import FAILURE, RETRY, SUCCESS
from celeriac.task import backoff_countdown
from celeriac.worker.execute import ACK, Settlement


@pytest.fixture
def published(app, monkeypatch):
    """Every message the app publishes, decoded, in order."""
    messages: list[tuple[str, TaskMessage]] = []
    publish = app.broker.publish

    def spy(batch):
        for item in batch:
            message = decode(item.envelope, frozenset({JSON}), None)
            assert isinstance(message, TaskMessage)
            messages.append((item.queue, message))
        publish(batch)

    monkeypatch.setattr(app.broker, "publish", spy)
    return messages


def test_retry_sends_the_same_task_again_with_retries_plus_one_and_an_eta(app, inline_worker, published):
    @app.task(bind=True, max_retries=3)
    def fetch_page(self, url, timeout=5):
        try:
            raise ConnectionError(f"cannot reach {url}")
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=30) from exc

    result = fetch_page.apply_async(("http://example.invalid",), {"timeout": 9}, queue="io")
    worker = inline_worker(app)
    before = datetime.now(UTC)
    worker.run_next(["io"])
    after = datetime.now(UTC)

    [(_, original), (queue, again)] = published
    assert queue == "io"
    assert again.id == original.id == result.id
    assert again.task == original.task
    assert again.retries == 1
    assert (again.args, again.kwargs) == (original.args, original.kwargs)
    assert again.root_id == original.root_id
    assert again.eta is not None
    assert before + timedelta(seconds=30) <= again.eta <= after + timedelta(seconds=30)

    length = app.broker.queue_length("io")
    assert (length.ready, length.scheduled, length.reserved) == (0, 1, 0)
    assert result.state == RETRY
    assert isinstance(result.result, ConnectionError)
    assert not result.ready()


def test_retry_loop_through_the_worker_ends_in_success(app, inline_worker):
    attempts: list[int] = []

    @app.task(bind=True, max_retries=5)
    def flaky(self):
        attempts.append(self.request.retries)
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return "finally"

    result = flaky.delay()
    worker = inline_worker(app)
    for _ in range(3):
        worker.run_next()
    assert attempts == [0, 1, 2]
    assert result.get(timeout=1) == "finally"
    assert result.state == SUCCESS
    assert app.broker.queue_length("celery").total == 0


def test_retry_keeps_the_message_options(app, inline_worker, published):
    @app.task(bind=True)
    def job(self):
        raise self.retry(countdown=10)

    job.apply_async(priority=6, delivery_mode="transient", time_limit=40, headers={"x-tenant": "acme"})
    inline_worker(app).run_next()
    retried = published[-1][1]
    assert retried.priority == 6
    assert retried.delivery_mode == 1
    assert retried.time_limit == 40
    assert retried.extra_headers == {"x-tenant": "acme"}


def test_retry_with_new_arguments_and_another_queue(app, inline_worker, published):
    @app.task(bind=True)
    def job(self, n):
        raise self.retry(args=(n + 1,), queue="later", countdown=5)

    job.delay(1)
    inline_worker(app).run_next()
    queue, retried = published[-1]
    assert queue == "later"
    assert list(retried.args) == [2]


def test_retry_without_countdown_uses_default_retry_delay(app, inline_worker, published):
    @app.task(bind=True, default_retry_delay=45)
    def job(self):
        raise self.retry()

    job.delay()
    before = datetime.now(UTC)
    inline_worker(app).run_next()
    eta = published[-1][1].eta
    assert eta is not None
    assert before + timedelta(seconds=45) <= eta <= datetime.now(UTC) + timedelta(seconds=45)


def test_retry_without_any_delay_uses_task_default_retry_delay_setting(make_app, inline_worker):
    app = make_app(task_default_retry_delay=90)

    @app.task(bind=True)
    def job(self):
        raise self.retry()

    job.delay()
    inline_worker(app).run_next()
    assert app.broker.queue_length("celery").scheduled == 1
    assert app.broker.fetch(["celery"], 1, 0, "c") == []


def test_past_max_retries_the_exception_is_raised_and_stored(app, inline_worker, published):
    @app.task(bind=True, max_retries=3)
    def job(self):
        try:
            raise ConnectionError("still down")
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=1) from exc

    result = job.apply_async(retries=3)
    inline_worker(app).run_next()
    assert len(published) == 1  # not sent again
    assert result.state == FAILURE
    with pytest.raises(ConnectionError, match="still down"):
        result.get(timeout=1)


def test_past_max_retries_without_exc_raises_max_retries_exceeded(app, inline_worker, published):
    @app.task(bind=True, max_retries=2)
    def job(self):
        raise self.retry(countdown=1)

    result = job.apply_async(retries=2)
    inline_worker(app).run_next()
    assert len(published) == 1
    assert result.state == FAILURE
    with pytest.raises(MaxRetriesExceededError, match="max_retries=2"):
        result.get(timeout=1)


def test_retry_max_retries_argument_overrides_the_task(app, inline_worker, published):
    @app.task(bind=True, max_retries=10)
    def job(self):
        raise self.retry(countdown=1, max_retries=1)

    result = job.apply_async(retries=1)
    inline_worker(app).run_next()
    assert result.state == FAILURE
    assert len(published) == 1


def test_task_max_retries_setting_applies_when_the_task_sets_none(make_app, inline_worker):
    app = make_app(task_max_retries=1)

    @app.task(bind=True)
    def job(self):
        raise self.retry(countdown=0)

    first = job.delay()
    worker = inline_worker(app)
    worker.run_next()
    assert first.state == RETRY
    worker.run_next()  # the retry, now at retries=1
    assert first.state == FAILURE
    assert isinstance(first.result, MaxRetriesExceededError)
    assert app.broker.queue_length("celery").total == 0


def test_max_retries_none_on_the_task_means_unlimited(app, inline_worker, published):
    assert app.conf.task_max_retries is not None

    @app.task(bind=True, max_retries=None)
    def forever(self):
        raise self.retry(countdown=1)

    result = forever.apply_async(retries=50)
    inline_worker(app).run_next()
    assert published[-1][1].retries == 51
    assert result.state == RETRY


def test_max_retries_none_in_a_base_class_means_unlimited(app, inline_worker, published):
    from celeriac import Task

    class Unlimited(Task):
        max_retries = None

    @app.task(bind=True, base=Unlimited)
    def forever(self):
        raise self.retry(countdown=1)

    forever.apply_async(retries=20)
    inline_worker(app).run_next()
    assert published[-1][1].retries == 21


def test_on_retry_handler_is_called(app, inline_worker):
    from celeriac import Task

    calls: list[tuple[str, str]] = []

    class Recording(Task):
        def on_retry(self, exc, task_id, args, kwargs, einfo):
            calls.append((type(exc).__name__, task_id))

    @app.task(bind=True, base=Recording)
    def job(self):
        raise self.retry(exc=TimeoutError("slow"), countdown=1)

    result = job.delay()
    inline_worker(app).run_next()
    assert calls == [("TimeoutError", result.id)]


# -- autoretry_for and backoff ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("factor", "retries", "maximum", "expected"),
    [(1, 0, 600, 1), (1, 3, 600, 8), (2, 3, 600, 16), (3, 10, 600, 600), (5, 0, 3, 3)],
)
def test_backoff_countdown_without_jitter_is_factor_times_two_to_the_retries_capped(
    factor, retries, maximum, expected
):
    assert backoff_countdown(factor, retries, maximum, full_jitter=False) == expected


def test_backoff_countdown_with_jitter_stays_between_zero_and_the_cap():
    values = {backoff_countdown(2, 3, 600, full_jitter=True) for _ in range(300)}
    assert min(values) >= 0
    assert max(values) <= 16
    assert len(values) > 1, "full jitter must spread the countdowns"


def test_backoff_jitter_never_exceeds_the_maximum():
    values = {backoff_countdown(1, 20, 60, full_jitter=True) for _ in range(300)}
    assert max(values) <= 60


def _retry_eta(app, inline_worker, published, **task_options):
    @app.task(autoretry_for=(ConnectionError,), max_retries=10, **task_options)
    def flaky():
        raise ConnectionError("network")

    flaky.apply_async(retries=3)
    before = datetime.now(UTC)
    inline_worker(app).run_next()
    after = datetime.now(UTC)
    retried = published[-1][1]
    assert retried.retries == 4
    assert retried.eta is not None
    return retried.eta, before, after


def test_autoretry_with_backoff_and_no_jitter(app, inline_worker, published):
    eta, before, after = _retry_eta(app, inline_worker, published, retry_backoff=2, retry_jitter=False)
    # 2 * 2**3 = 16 s
    assert before + timedelta(seconds=16) <= eta <= after + timedelta(seconds=16)


def test_autoretry_with_backoff_and_jitter(app, inline_worker, published):
    eta, before, after = _retry_eta(app, inline_worker, published, retry_backoff=2, retry_jitter=True)
    assert before <= eta <= after + timedelta(seconds=16)


def test_autoretry_backoff_is_capped_by_retry_backoff_max(app, inline_worker, published):
    eta, before, after = _retry_eta(
        app, inline_worker, published, retry_backoff=True, retry_backoff_max=5, retry_jitter=False
    )
    assert before + timedelta(seconds=5) <= eta <= after + timedelta(seconds=5)


def test_autoretry_uses_retry_kwargs_countdown(app, inline_worker, published):
    eta, before, after = _retry_eta(
        app, inline_worker, published, retry_kwargs={"countdown": 7}, retry_backoff=True
    )
    assert before + timedelta(seconds=7) <= eta <= after + timedelta(seconds=7)


def test_autoretry_stores_retry_state_with_the_exception(app, inline_worker):
    @app.task(autoretry_for=(ConnectionError,), max_retries=2)
    def flaky():
        raise ConnectionError("network")

    result = flaky.delay()
    inline_worker(app).run_next()
    assert result.state == RETRY
    assert isinstance(result.result, ConnectionError)


def test_exception_not_in_autoretry_for_fails_at_once(app, inline_worker, published):
    @app.task(autoretry_for=(ConnectionError,))
    def broken():
        raise ValueError("bug")

    result = broken.delay()
    inline_worker(app).run_next()
    assert len(published) == 1
    assert result.state == FAILURE


def test_dont_autoretry_for_wins(app, inline_worker, published):
    class Fatal(ConnectionError):
        pass

    @app.task(autoretry_for=(ConnectionError,), dont_autoretry_for=(Fatal,))
    def job():
        raise Fatal("give up")

    result = job.delay()
    inline_worker(app).run_next()
    assert len(published) == 1
    assert result.state == FAILURE


def test_autoretry_past_max_retries_stores_the_original_exception(app, inline_worker, published):
    @app.task(autoretry_for=(ConnectionError,), max_retries=2)
    def flaky():
        raise ConnectionError("network")

    result = flaky.apply_async(retries=2)
    inline_worker(app).run_next()
    assert len(published) == 1
    with pytest.raises(ConnectionError):
        result.get(timeout=1)


def test_retry_state_is_stored_before_the_retry_is_sent(app, inline_worker, monkeypatch):
    # a retry without countdown can run in another child and succeed within a millisecond:
    # a RETRY written after the send (at the first attempt's settle) would overwrite SUCCESS
    @app.task(bind=True)
    def flaky(self):
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError("busy"), countdown=0)
        return "done"

    result = flaky.delay()
    states_when_sent: list[str] = []
    publish = app.broker.publish

    def spy(batch):
        states_when_sent.append(result.state)
        publish(batch)

    monkeypatch.setattr(app.broker, "publish", spy)
    worker = inline_worker(app)
    first = worker.fetch_one()
    worker.executor.execute(first)  # the first attempt, not settled yet
    assert states_when_sent == [RETRY]
    assert isinstance(result.result, ConnectionError)
    assert worker.run_next() is not None  # the retry runs and settles first
    worker.settle(first, Settlement(ACK))  # then the first attempt settles
    assert result.state == SUCCESS
    assert result.get(timeout=1) == "done"
