"""Fixtures for process tests: a broker file, the run log, workers cleaned up by pid, and
``on_broker`` (one test on SQLite, Redis and RabbitMQ in turn)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process.harness import HERE, Runs, Worker


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment of the worker subprocesses and of the in-test producer app."""
    values = {
        "CELERIAC_BROKER_URL": f"sqlite:///{tmp_path / 'broker.db'}",
        "PROC_RUNS": str(tmp_path / "runs.log"),
        "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
    }
    return {**os.environ, **values}


@pytest.fixture
def runs(env: dict[str, str]) -> Runs:
    return Runs(Path(env["PROC_RUNS"]))


@pytest.fixture
def app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """The producer side of proc_app, in this process, on the same broker file."""
    for key in ("CELERIAC_BROKER_URL", "PROC_RUNS"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.syspath_prepend(str(HERE))
    import proc_app

    conf = proc_app.app.conf
    before = conf.as_dict()
    conf.broker_url = env["CELERIAC_BROKER_URL"]
    yield proc_app.app
    proc_app.app.close()
    # a test's settings (task_routes, task_queues, ...) must not follow the app into the next test
    conf.update({name: value for name, value in before.items() if conf[name] != value})


@pytest.fixture
def workers(env: dict[str, str]) -> Iterator:
    """Start workers with ``workers(*cli_args, **env_overrides)``; all are killed at the end."""
    started: list[Worker] = []

    def start(*args: str, **overrides: str) -> Worker:
        worker_env = {**env, **{k.upper(): v for k, v in overrides.items()}}
        worker = Worker(worker_env, list(args)).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.cleanup()


# -- on_broker: the same test on SQLite, Redis and RabbitMQ; each keeps to its own Redis key
# prefix or RabbitMQ vhost, removed afterwards


def _sqlite(request, env, app) -> None:
    """The default of the fixtures: broker and results in one SQLite file."""


def _redis(request, env, app) -> None:
    url = request.getfixturevalue("redis_url")
    prefix = f"proc-{uuid.uuid4().hex[:8]}:"
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
    vhost = f"celeriac-proc-{uuid.uuid4().hex[:8]}"
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
