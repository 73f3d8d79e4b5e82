"""``chunks`` across Celery 5 and celeriac on one Redis: each side's producer feeds the
other's worker, and both lay the ``celery.starmap`` messages out the same way.

Each test keeps to its own ``global_keyprefix``; results go to the shared Redis
(unprefixed keys, deleted at the end). Workers are real processes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac.canvas.chunks import STARMAP
from tests.interop.shared_tasks import ADD, make_celeriac, make_celery

pytestmark = pytest.mark.process

#: 10 calls of add(i, i) in chunks of 3, and what each chunk returns.
CALLS = [(i, i) for i in range(10)]
EXPECTED = [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]


@pytest.fixture
def apps(redis_url: str, keyprefix: str) -> Iterator[tuple[Any, Any]]:
    """A Celery and a celeriac producer on this test's keys, both with the Redis result backend."""
    celery_app = make_celery(redis_url, keyprefix, redis_url, set_as_current=False)
    celeriac_app = make_celeriac(redis_url, keyprefix, redis_url, set_as_current=False)
    yield celery_app, celeriac_app
    celeriac_app.close()
    celery_app.close()


def queued(rdb: Any, key: str) -> list[dict[str, Any]]:
    """The kombu envelopes waiting on a Redis list, oldest first, with the body decoded."""
    out = []
    for raw in reversed(rdb.lrange(key, 0, -1)):  # kombu LPUSHes and BRPOPs
        envelope = json.loads(raw)
        envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
        out.append(envelope)
    return out


def test_a_celery_producers_chunks_run_on_a_celeriac_worker(apps, workers, runs, redis_url, result_keys):
    celery_app, celeriac_app = apps
    sent = celery_app.tasks[ADD].chunks(CALLS, 3).apply_async()
    result_keys.extend(child.id for child in sent.results)

    workers.celeriac("-c", "2", "-Q", "celery", INTEROP_RESULT_BACKEND=redis_url)
    assert sent.get(timeout=20) == EXPECTED
    assert [celeriac_app.AsyncResult(child.id).get(timeout=5) for child in sent.results] == EXPECTED

    entries = runs.wait(len(CALLS))
    assert {e["side"] for e in entries} == {"celeriac"}
    assert sorted(tuple(e["args"]) for e in entries) == CALLS


def test_celeriac_chunks_run_on_a_stock_celery_worker(apps, workers, runs, redis_url, result_keys):
    celery_app, celeriac_app = apps
    sent = celeriac_app.tasks[ADD].chunks(iter(CALLS), 3).apply_async(queue="to-celery")
    result_keys.extend(child.id for child in sent)

    workers.celery("-c", "2", "-P", "prefork", "-Q", "to-celery", INTEROP_RESULT_BACKEND=redis_url)
    assert sent.get(timeout=20) == EXPECTED
    assert [celery_app.AsyncResult(child.id).get(timeout=5) for child in sent] == EXPECTED

    entries = runs.wait(len(CALLS))
    assert {e["side"] for e in entries} == {"celery"}
    assert sorted(tuple(e["args"]) for e in entries) == CALLS


def test_both_producers_lay_the_chunk_messages_out_alike(apps, rdb, keyprefix):
    celery_app, celeriac_app = apps
    from_celery = celery_app.tasks[ADD].chunks(CALLS, 3).apply_async(queue="from-celery")
    from_celeriac = celeriac_app.tasks[ADD].chunks(CALLS, 3).apply_async(queue="from-celeriac")

    theirs = queued(rdb, keyprefix + "from-celery")
    ours = queued(rdb, keyprefix + "from-celeriac")
    assert len(theirs) == len(ours) == len(EXPECTED)
    for index, (a, b) in enumerate(zip(theirs, ours, strict=True)):
        assert a["headers"]["task"] == b["headers"]["task"] == STARMAP
        assert a["headers"]["group"] == from_celery.id
        assert b["headers"]["group"] == from_celeriac.id
        assert a["headers"]["group_index"] == b["headers"]["group_index"] == index
        assert a["content-type"] == b["content-type"] == "application/json"
        assert a["properties"]["delivery_mode"] == b["properties"]["delivery_mode"] == 2
        # the body is identical: [[], {"task": <signature>, "it": [...]}, embed]
        assert a["body"] == b["body"]
    assert [m["body"][1]["it"] for m in ours] == [[list(c) for c in CALLS[i : i + 3]] for i in (0, 3, 6, 9)]
