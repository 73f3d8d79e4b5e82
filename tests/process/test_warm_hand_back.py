"""Warm shutdown hands a child's prefetched messages back when the stop begins, not
after its running task: another worker can start them at once."""

from __future__ import annotations

import signal
import uuid

import pytest

from tests.process.harness import wait_until

pytestmark = pytest.mark.process

SHORT = 4


def _sqlite(request, env, app) -> None:
    """The default of the fixtures: broker and results in one SQLite file."""


def _redis(request, env, app) -> None:
    url = request.getfixturevalue("redis_url")
    prefix = f"handback-{uuid.uuid4().hex[:8]}:"
    options = f'{{"global_keyprefix": "{prefix}"}}'
    env.update(
        CELERIAC_BROKER_URL=url, CELERIAC_RESULT_BACKEND=url, CELERIAC_BROKER_TRANSPORT_OPTIONS=options
    )
    app.conf.update(broker_url=url, result_backend=url, broker_transport_options={"global_keyprefix": prefix})

    def forget() -> None:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()

    request.addfinalizer(forget)


def _amqp(request, env, app) -> None:
    from tests.rabbitmq_server import ensure_running, rabbitmqctl

    ensure_running()
    vhost = f"celeriac-handback-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    request.addfinalizer(lambda: rabbitmqctl("delete_vhost", vhost))
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    results = env["CELERIAC_BROKER_URL"]  # results stay in the SQLite file
    env.update(CELERIAC_BROKER_URL=url, CELERIAC_RESULT_BACKEND=results)
    app.conf.update(broker_url=url, result_backend=results)


@pytest.fixture(params=[_sqlite, _redis, _amqp], ids=["sqlite", "redis", "amqp"])
def on_broker(request, env, app):
    """The app and its workers on each broker in turn; proc_app's settings are put back after."""
    keys = ("broker_url", "result_backend", "broker_transport_options")
    saved = {key: app.conf[key] for key in keys}
    request.param(request, env, app)
    yield app
    app.close()
    app.conf.update(saved)


def test_warm_shutdown_hands_prefetched_messages_back_while_the_running_task_goes_on(
    on_broker, workers, runs, tmp_path
):
    app = on_broker
    release = tmp_path / "release"
    long = app.send_task("hold", ["long", str(release), 10.0])
    app.tasks["run"].apply_many([(f"short{i}",) for i in range(SHORT)])
    worker = workers("-c", "1", "--prefetch-multiplier", "8").wait_ready(1)
    runs.wait(1, "long")
    wait_until(
        lambda: app.broker.queue_length("celery").ready == 0, 5, "the child to prefetch the short tasks"
    )

    worker.send(signal.SIGTERM)
    wait_until(
        lambda: app.broker.queue_length("celery").ready == SHORT,
        2,
        f"the {SHORT} prefetched tasks back in the queue while the long task runs",
    )
    assert not long.ready(), "the running task goes on"
    assert worker.proc.poll() is None

    release.touch()
    assert worker.wait_exit() == 0
    assert long.get(timeout=10) == "released"
    assert long.state == "SUCCESS"
    assert runs.count() == 1, "no prefetched task ran on the stopping worker"
    assert app.broker.queue_length("celery").ready == SHORT
