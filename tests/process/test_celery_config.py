"""A Celery configuration in a real worker: old setting names, beat_schedule at start, and a result
backend the worker cannot use (it stops once, before any child, instead of crashing children)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

LEGACY_CONFIG = """
    import os

    BROKER_URL = os.environ["LEGACY_BROKER"]
    CELERY_RESULT_BACKEND = os.environ["LEGACY_BROKER"]
    CELERYD_CONCURRENCY = 1
    CELERY_ACKS_LATE = True
    CELERY_TASK_SERIALIZER = "json"
    """

LEGACY_APP = """
    from celeriac import Celery

    app = Celery("legacy_app")
    app.config_from_object("legacy_config")


    @app.task(name="legacy.add")
    def add(x, y):
        return x + y
    """


def test_a_worker_and_a_producer_configured_with_old_names_meet_on_the_configured_broker(
    tmp_path: Path, env: dict[str, str], workers, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "legacy_config.py").write_text(textwrap.dedent(LEGACY_CONFIG))
    (tmp_path / "legacy_app.py").write_text(textwrap.dedent(LEGACY_APP))
    broker = f"sqlite:///{tmp_path / 'legacy.db'}"
    monkeypatch.setenv("LEGACY_BROKER", broker)
    monkeypatch.delenv("CELERIAC_BROKER_URL", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    env.pop("CELERIAC_BROKER_URL")  # only the old names say where the broker is
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    worker = workers("-A", "legacy_app", legacy_broker=broker).wait_ready(1)
    worker.wait_for(rf"ready: 1 children, .*broker {broker}")
    worker.wait_for(r"read CELERYD_CONCURRENCY \(Celery's old name\) as worker_concurrency")
    import legacy_app

    try:
        assert legacy_app.add.delay(2, 3).get(timeout=20) == 5
    finally:
        legacy_app.app.close()
        sys.modules.pop("legacy_app", None)


def test_a_worker_names_each_beat_schedule_entry_that_will_not_run(workers):
    schedule = (
        '{"nightly-report": {"task": "run", "schedule": 86400}, "ping": {"task": "hold", "schedule": 5}}'
    )
    worker = workers("-c", "1", celeriac_beat_schedule=schedule).wait_ready(1)
    (line,) = [line for line in worker.log().splitlines() if "beat_schedule" in line]
    assert "WARNING" in line
    assert "2 entries that will NOT run: 'nightly-report' (task run), 'ping' (task hold)" in line
    assert "periodic tasks (beat) are not implemented yet" in line.lower()
    assert "celery -A proc_app beat" in line


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("rpc://", "result_backend='rpc://' is not supported"),  # refused by the setting
        ("redis://localhost:notaport/0", "the port is not a number"),  # refused when built
    ],
)
def test_a_result_backend_the_worker_cannot_use_stops_it_once_before_any_child(workers, url, words):
    worker = workers("-c", "2", celeriac_result_backend=url)
    assert worker.wait_exit() == 2
    log = worker.log()
    assert "celeriac worker: configuration error: result_backend=" in log and words in log
    assert "started child" not in log and "crashed" not in log, log
