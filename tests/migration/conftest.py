"""The migration suite's fixtures: the brokers a moved project runs on, its environment,
its workers (killed by pid), and the project imported in the test process, as the web
process that sends its tasks would import it.

The project in ``celery_project/`` is stored as a Celery user has it *before* the move
(``from celery import ...``, ``celery -A proj worker`` in the Procfile); ``variants/``
holds files laid over it for the other cases (old setting names, canvas and beat). Each
test works on its own copy in ``tmp_path``, so the templates are never rewritten.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from celeriac import _state, context
from tests.migration.moving import Broker, ProcfileWorker

#: Variables that would point the project elsewhere than its own settings say
_FOREIGN_ENV = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_APP", "DJANGO_SETTINGS_MODULE")


@pytest.fixture
def sqlite_broker(tmp_path: Path) -> Broker:
    """One SQLite file outside the project directory, for messages and results."""
    return Broker("sqlite", f"sqlite:///{tmp_path / 'proj-broker.db'}")


@pytest.fixture(params=["sqlite", "redis"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """SQLite, then the shared Redis under a key prefix of its own (removed afterwards,
    with the result keys of every task the project's signal receivers saw run)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_broker")
        return
    url = request.getfixturevalue("redis_url")
    redis_broker = Broker("redis", url, keyprefix=f"migration-{uuid.uuid4().hex[:8]}:")
    yield redis_broker
    _forget_redis_keys(redis_broker, tmp_path / "events.log")


def _forget_redis_keys(broker: Broker, events: Path) -> None:
    import redis

    client = redis.Redis.from_url(broker.url)
    try:
        keys = list(client.scan_iter(match=f"{broker.keyprefix}*"))
        if events.exists():  # result keys are not prefixed (Celery's layout)
            task_ids = {line.split()[2] for line in events.read_text().splitlines()}
            keys += [f"celery-task-meta-{task_id}" for task_id in task_ids - {"-"}]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def project_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the project's processes, without a broker yet: this celeriac on
    ``PYTHONPATH`` (not the project), and the files its receivers and handlers write."""
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CELERIAC_") and name not in _FOREIGN_ENV
    }
    return {
        **base,
        "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry),
        "PROJ_EVENTS": str(tmp_path / "events.log"),
        "PROJ_ALERTS": str(tmp_path / "alerts.log"),
    }


@pytest.fixture
def start_worker() -> Iterator:
    """``start_worker(env, line, project)``: a Procfile worker, killed by pid at the end."""
    started: list[ProcfileWorker] = []

    def start(env: dict[str, str], line: str, project: Path) -> ProcfileWorker:
        worker = ProcfileWorker(env, line, project).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.cleanup()


@pytest.fixture
def import_project(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """``import_project(project, env)``: the moved project's ``proj`` package, with its
    ``tasks`` and ``views``, imported here with ``env``'s variables. Afterwards its app is
    closed, its modules are forgotten and the default app (``@shared_task``'s) is put back."""
    saved_app = context.default_app()
    saved_shared = list(_state._shared)
    imported: list[ModuleType] = []

    def load(project: Path, env: dict[str, str]) -> ModuleType:
        for name in (*_FOREIGN_ENV, *(name for name in os.environ if name.startswith("CELERIAC_"))):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            if name.startswith("PROJ_"):
                monkeypatch.setenv(name, value)
        monkeypatch.syspath_prepend(str(project))
        import proj.tasks
        import proj.views

        imported.append(proj)
        return proj

    yield load
    for package in imported:
        package.celery_app.close()
    for name in [name for name in sys.modules if name == "proj" or name.startswith("proj.")]:
        del sys.modules[name]
    context.set_default_app(saved_app)
    _state._shared[:] = saved_shared
