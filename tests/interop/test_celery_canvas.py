"""Canvas across Celery 5 and celeriac on one Redis: a stock Celery producer's chain and link
callbacks run on a celeriac worker, and celeriac's run on a stock Celery worker, because both
lay them out in Celery's protocol-2 embed (``callbacks``, ``errbacks``, ``chain``).

Each test keeps to its own ``global_keyprefix``; results go to the shared Redis
(unprefixed keys, deleted at the end). Workers are real processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.interop.shared_tasks import ADD, RECORD, make_celeriac, make_celery

pytestmark = pytest.mark.process


@pytest.fixture
def apps(redis_url: str, keyprefix: str) -> Iterator[tuple[Any, Any]]:
    """A Celery and a celeriac producer on this test's keys, both with the Redis result backend."""
    celery_app = make_celery(redis_url, keyprefix, redis_url, set_as_current=False)
    celeriac_app = make_celeriac(redis_url, keyprefix, redis_url, set_as_current=False)
    yield celery_app, celeriac_app
    celeriac_app.close()
    celery_app.close()


def _ids(result: Any) -> list[str]:
    found = []
    while result is not None:
        found.append(result.id)
        result = result.parent
    return found


def _send_canvas(producer: Any, queue: str) -> tuple[Any, Any, Any]:
    """A chain of 3, a link and a link_error, sent by ``producer`` (Celery's or celeriac's API)."""
    import celery

    import celeriac

    chain = celery.chain if isinstance(producer, celery.Celery) else celeriac.chain
    add, record = producer.tasks[ADD], producer.tasks[RECORD]
    steps = chain(add.s(1, 2), add.s(10), add.s(100)).apply_async(queue=queue)
    linked = add.apply_async((5, 5), link=record.s("linked"), queue=queue)
    failed = add.apply_async(("a", 1), link_error=record.s(), queue=queue)
    return steps, linked, failed


def _check(steps: Any, linked: Any, failed: Any, runs: Any, side: str) -> None:
    assert steps.get(timeout=20) == 113
    assert steps.parent.get(timeout=5) == 13
    assert linked.get(timeout=20) == 10
    with pytest.raises(TypeError):
        failed.get(timeout=20)
    # 3 chain steps, the linked add and its callback, the failing add and its errback
    entries = runs.wait(7)
    assert {entry["side"] for entry in entries} == {side}
    adds = sorted((tuple(entry["args"]) for entry in entries if entry["label"] == "add"), key=repr)
    assert adds == sorted([(1, 2), (3, 10), (13, 100), (5, 5), ("a", 1)], key=repr)
    # the callback got the result first, the errback the failed task's id (the old form: bound)
    others = sorted(
        ((entry["label"], entry["args"]) for entry in entries if entry["label"] != "add"), key=repr
    )
    assert others == sorted([(10, ["linked"]), (failed.id, [])], key=repr)


def test_a_celery_producers_chain_and_links_run_on_a_celeriac_worker(
    apps, workers, runs, redis_url, result_keys
):
    celery_app, _ = apps
    steps, linked, failed = _send_canvas(celery_app, "celery")
    result_keys.extend([*_ids(steps), linked.id, failed.id])
    workers.celeriac("-c", "2", "-Q", "celery", INTEROP_RESULT_BACKEND=redis_url)
    _check(steps, linked, failed, runs, "celeriac")


def test_celeriac_chain_and_links_run_on_a_stock_celery_worker(apps, workers, runs, redis_url, result_keys):
    _, celeriac_app = apps
    steps, linked, failed = _send_canvas(celeriac_app, "to-celery")
    result_keys.extend([*_ids(steps), linked.id, failed.id])
    # as in Celery, a chain's options apply to its first step: the others go by their own routes
    workers.celery("-c", "2", "-P", "prefork", "-Q", "to-celery,celery", INTEROP_RESULT_BACKEND=redis_url)
    _check(steps, linked, failed, runs, "celery")


def test_a_celery_producers_chord_runs_once_on_a_celeriac_worker(apps, workers, runs, redis_url, result_keys):
    import celery

    celery_app, _ = apps
    add, record = celery_app.tasks[ADD], celery_app.tasks[RECORD]
    result = celery.chord(add.s(i, i) for i in range(5))(record.s("body"))
    result_keys.extend([result.id, *(member.id for member in result.parent.results)])
    workers.celeriac("-c", "2", "-Q", "celery", INTEROP_RESULT_BACKEND=redis_url)
    assert result.get(timeout=20) == [0, 2, 4, 6, 8]  # record returns its first argument
    entries = runs.wait(6)
    assert {entry["side"] for entry in entries} == {"celeriac"}
    bodies = [entry for entry in entries if entry["label"] != "add"]
    assert [(entry["label"], entry["args"]) for entry in bodies] == [([0, 2, 4, 6, 8], ["body"])]
