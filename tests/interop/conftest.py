"""Fixtures for the interoperability tests: the broker both sides share (``broker_url``;
Redis unless a test module overrides the fixture), one namespace per test (``keyprefix``:
the Redis key prefix, and the Celery node name), the run log, producer apps of both
kinds, and worker processes of both kinds, killed by pid at the end."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.interop.shared_tasks import is_redis
from tests.process.harness import ROOT, Worker, wait_until

HERE = Path(__file__).resolve().parent
APP = "shared_tasks"
#: Variables a developer's shell may carry that would point either side elsewhere.
_SCRUBBED = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_CONFIG_MODULE")


class RunLog:
    """The JSON lines the shared tasks append (see ``shared_tasks.write_run``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.endswith("}")]

    def count(self) -> int:
        """How many runs are logged (complete lines), without parsing them."""
        if not self.path.exists():
            return 0
        return self.path.read_bytes().count(b"}\n")

    def by_label(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in self.entries():
            out.setdefault(entry["label"], []).append(entry)
        return out

    def wait(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        wait_until(lambda: self.count() >= count, timeout, f"{count} task runs in {self.path}")
        return self.entries()


class Process(Worker):
    """A worker subprocess from a full command line (celeriac's or Celery's), in its own
    session; cleanup kills the group and every descendant by pid."""

    def __init__(self, env: dict[str, str], cmd: list[str]) -> None:
        super().__init__(env, [])
        self.cmd = cmd

    def command(self) -> list[str]:
        return self.cmd

    def cleanup(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(psutil.Error):
                self.child_pids |= {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        super().cleanup()


@pytest.fixture
def broker_url(redis_url: str) -> str:
    """The broker both sides share: Redis here; a test module overrides this fixture to
    run the same fixtures on another broker (``test_celery_amqp``: a vhost per test)."""
    return redis_url


@pytest.fixture
def keyprefix(broker_url: str) -> Iterator[str]:
    """This test's namespace: on Redis its ``global_keyprefix`` (every key under it is
    deleted at the end); on any broker the name of its Celery worker node."""
    prefix = f"interop-{uuid.uuid4().hex[:10]}:"
    yield prefix
    if not is_redis(broker_url):
        return
    import redis

    client = redis.Redis.from_url(broker_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def rdb(redis_url: str) -> Iterator[Any]:
    """A plain redis-py client, to look at the keys the way Celery's transport does."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def result_keys(rdb) -> Iterator[list[str]]:
    """Task ids whose (unprefixed) result keys in Redis are deleted at the end."""
    ids: list[str] = []
    yield ids
    if ids:
        rdb.delete(*(f"celery-task-meta-{task_id}" for task_id in ids))


@pytest.fixture
def env(broker_url: str, keyprefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment of the worker subprocesses (and of this process, for the run log)."""
    for name in _SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    values = {
        "INTEROP_BROKER_URL": broker_url,
        "INTEROP_KEYPREFIX": keyprefix,
        "INTEROP_RUNS": str(tmp_path / "runs.jsonl"),
        "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
    }
    monkeypatch.setenv("INTEROP_RUNS", values["INTEROP_RUNS"])
    base = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("CELERIAC_")}
    return {**base, **values}


@pytest.fixture
def runs(env: dict[str, str]) -> RunLog:
    return RunLog(Path(env["INTEROP_RUNS"]))


@pytest.fixture
def celery_app(broker_url: str, keyprefix: str) -> Iterator[Any]:
    """A stock Celery producer on this test's broker (and keys)."""
    from tests.interop.shared_tasks import make_celery

    app = make_celery(broker_url, keyprefix, set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def celeriac_app(broker_url: str, keyprefix: str) -> Iterator[Any]:
    """A celeriac producer on this test's broker (and keys)."""
    from tests.interop.shared_tasks import make_celeriac

    app = make_celeriac(broker_url, keyprefix, set_as_current=False)
    yield app
    app.close()


class Workers:
    """Starts worker processes of both kinds on one test's broker and kills them all at the end."""

    def __init__(self, env: dict[str, str], keyprefix: str) -> None:
        self.env = env
        self.keyprefix = keyprefix
        self.started: list[Process] = []

    def celeriac(self, *args: str, **env: str) -> Process:
        """``celeriac worker -A shared_tasks:celeriac_app -l info *args``; ``env`` overrides."""
        cmd = [sys.executable, "-m", "celeriac", "worker", "-A", f"{APP}:celeriac_app", "-l", "info"]
        return self._start([*cmd, *args], env)

    def celery(self, *args: str, **env: str) -> Process:
        """``celery -A shared_tasks:celery_app worker`` without heartbeat, mingle and gossip."""
        cmd = [sys.executable, "-m", "celery", "-A", f"{APP}:celery_app", "worker", "-l", "info"]
        cmd += ["--without-heartbeat", "--without-mingle", "--without-gossip"]
        cmd += ["-n", f"{self.keyprefix.rstrip(':')}@%h"]
        return self._start([*cmd, *args], env)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``celeriac *args`` to completion (killed if it takes over 60 s)."""
        cmd = [sys.executable, "-m", "celeriac", *args]
        return subprocess.run(
            cmd, check=False, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60
        )

    def _start(self, cmd: list[str], env: dict[str, str]) -> Process:
        proc = Process({**self.env, **env}, cmd)
        self.started.append(proc)
        return proc.start()

    def cleanup(self) -> None:
        for proc in self.started:
            proc.cleanup()


@pytest.fixture
def workers(env: dict[str, str], keyprefix: str) -> Iterator[Workers]:
    started = Workers(env, keyprefix)
    yield started
    started.cleanup()
