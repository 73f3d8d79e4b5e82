"""celeriac.sending: every send goes through the one producer."""

from __future__ import annotations

import pytest

from celeriac.brokers.base import Outgoing
from celeriac.errors import ConfigurationError
from celeriac.sending import Producer


@pytest.fixture
def through_producer(app, monkeypatch):
    """The task names of every batch the app's producer publishes, in order."""
    batches: list[list[str]] = []
    publish = Producer.publish

    def spy(self, batch):
        batch = list(batch)
        batches.append([message.task for message, _ in batch])
        publish(self, batch)

    monkeypatch.setattr(Producer, "publish", spy)
    return batches


def test_apply_async_send_task_apply_many_and_chunks_all_publish_through_the_producer(app, through_producer):
    @app.task
    def add(x, y):
        return x + y

    add.delay(1, 2)
    app.send_task("elsewhere.task", (1,))
    add.apply_many([(1, 2), (3, 4)])
    add.chunks([(1, 2), (3, 4), (5, 6)], 2).apply_async()
    assert through_producer == [
        [add.name],
        ["elsewhere.task"],
        [add.name, add.name],
        ["celery.starmap", "celery.starmap"],
    ]
    assert app.broker.queue_length("celery").ready == 6


def test_a_retry_is_published_through_the_producer(app, inline_worker, through_producer):
    @app.task(bind=True, max_retries=1)
    def flaky(self):
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return "ok"

    result = flaky.delay()
    worker = inline_worker(app)
    worker.run_next()
    worker.run_next()
    assert through_producer == [[flaky.name], [flaky.name]]
    assert result.get(timeout=1) == "ok"


def test_a_message_early_for_its_eta_is_deferred_through_the_producer(app, inline_worker, monkeypatch):
    @app.task
    def later():
        return 1

    deferred: list[tuple[str, float]] = []
    defer = Producer.defer

    def spy(self, delivery, until):
        deferred.append((delivery.queue, until))
        defer(self, delivery, until)

    monkeypatch.setattr(Producer, "defer", spy)
    message, _ = app.build_message(later.name, (), task=later, countdown=60)
    # ready at once, as a producer that does not schedule on the broker sends it
    app.broker.publish([Outgoing("celery", app.producer.envelope(message), True, None, 0)])
    inline_worker(app).run_next()
    assert deferred == [("celery", message.eta_timestamp)]
    assert app.broker.queue_length("celery").scheduled == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"countdown": "soon"}, "countdown='soon': expected a number of seconds"),
        ({"priority": 300}, "priority=300 is invalid: expected an integer from 0 to 255"),
        ({"time_limit": -1}, "time_limit=-1 is invalid"),
        ({"link": "x"}, "link='x': expected a signature"),
        ({"contdown": 1}, "did you mean 'countdown'"),
    ],
)
def test_eager_mode_rejects_what_a_send_rejects(make_app, options, error):
    sending = make_app()
    eager = make_app(task_always_eager=True)
    for app in (sending, eager):

        @app.task
        def job():
            return 1

        with pytest.raises(ConfigurationError) as info:
            job.apply_async((), **options)
        assert error in str(info.value)
    assert sending.broker.queue_length("celery").total == 0


def test_eager_mode_validates_without_building_a_message(make_app, monkeypatch):
    app = make_app(task_always_eager=True)

    @app.task
    def job():
        return 7

    def no_build(*args, **kwargs):
        raise AssertionError("eager mode built a message")

    monkeypatch.setattr(Producer, "build", no_build)
    assert job.delay().get() == 7


def test_the_producer_declares_each_queue_once(app, monkeypatch):
    declared: list[str] = []
    declare = app.broker.declare_queue
    monkeypatch.setattr(
        app.broker, "declare_queue", lambda queue: (declared.append(queue.name), declare(queue))
    )
    for _ in range(3):
        app.send_task("t", (), queue="one")
    app.send_task("t", (), queue="two")
    assert declared == ["one", "two"]
