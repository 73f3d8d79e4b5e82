"""``update_state`` progress seen by a producer while a real worker runs the task, on SQLite and Redis.

The ``progress`` task of proc_app reports its first step, then waits for a file the test
creates only once it has read that step: the test awaits the PROGRESS state, never a time.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from celeriac import AsyncResult
from tests.process.harness import wait_until

pytestmark = pytest.mark.process


def _producer_sees_progress_then_the_outcome(app, workers, tmp_path: Path) -> None:
    workers("-c", "1").wait_ready(1)
    release = tmp_path / "release"
    result = app.send_task("progress", ["progress", 3, str(release)])
    wait_until(lambda: result.state == "PROGRESS", 20, "the task's PROGRESS state")
    assert result.info == {"current": 0, "total": 3}
    assert AsyncResult(result.id, app=app).result == {"current": 0, "total": 3}
    assert not result.ready()
    release.touch()
    assert result.get(timeout=20) == 3
    assert (result.state, result.info) == ("SUCCESS", 3)
    result.forget()  # a Redis result key lives outside the test's key prefix


def test_progress_on_sqlite(app, workers, tmp_path):
    _producer_sees_progress_then_the_outcome(app, workers, tmp_path)


@pytest.fixture
def redis_app(app, env, redis_url):
    """Workers and producer on the shared Redis (broker and results), under a key prefix of their own."""
    prefix = f"proc-{uuid.uuid4().hex[:8]}:"
    options = f'{{"global_keyprefix": "{prefix}"}}'
    env.update(
        CELERIAC_BROKER_URL=redis_url,
        CELERIAC_RESULT_BACKEND=redis_url,
        CELERIAC_BROKER_TRANSPORT_OPTIONS=options,
    )
    app.conf.update(
        broker_url=redis_url, result_backend=redis_url, broker_transport_options={"global_keyprefix": prefix}
    )
    yield app
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_progress_on_redis(redis_app, workers, tmp_path):
    _producer_sees_progress_then_the_outcome(redis_app, workers, tmp_path)
