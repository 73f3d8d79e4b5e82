"""Fixtures for process tests: a broker file, the run log, and workers cleaned up by pid."""

from __future__ import annotations

import os
import sys
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
