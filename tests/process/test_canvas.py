"""Canvas on real worker processes: a chain of 3, a group of 10, link and link_error, chords of
100 and 1,000 acks_late members, on the embedded SQLite broker and on Redis."""

from __future__ import annotations

import time

import pytest

from celeriac import chain, chord, group
from tests.process.conftest import _redis, _sqlite

pytestmark = pytest.mark.process


@pytest.fixture(params=[_sqlite, _redis], ids=["sqlite", "redis"])
def on_store(request, env, app):
    """The app and its workers on SQLite, then Redis; proc_app's settings are put back after."""
    keys = ("broker_url", "result_backend", "broker_transport_options")
    saved = {key: app.conf[key] for key in keys}
    request.param(request, env, app)
    yield app
    app.close()
    app.conf.update(saved)


def test_chain_group_and_links_on_a_real_worker(on_store, workers, runs):
    app = on_store
    add, fail = app.tasks["add"], app.tasks["fail"]
    errback, errback_here = app.tasks["errback"], app.tasks["errback_here"]

    steps = chain(add.s(1, 2), add.s(10), add.s(100)).apply_async()
    members = group(add.s(i, i) for i in range(10)).apply_async()
    linked = add.apply_async((5, 5), link=add.s(1))
    failed = fail.apply_async(("f",), link_error=[errback.s(), errback_here.s()])
    stopped = chain(add.s(0, 1), fail.s(), add.s(7)).apply_async(link_error=errback.s())
    workers("-c", "2").wait_ready(2)

    assert steps.get(timeout=30) == 113
    assert steps.parent.get(timeout=30) == 13
    assert steps.parent.parent.get(timeout=30) == 3
    assert members.get(timeout=30) == [2 * i for i in range(10)]
    assert members.completed_count() == 10
    assert linked.get(timeout=30) == 10
    failing_step = stopped.parent
    with pytest.raises(ValueError, match="f"):
        failed.get(timeout=30)
    with pytest.raises(ValueError):
        failing_step.get(timeout=30)
    runs.wait(1, "add:10:1")
    runs.wait(1, f"errback:{failed.id}")
    runs.wait(1, f"errback-here:{failed.id}:ValueError")
    runs.wait(1, f"errback:{failing_step.id}")
    assert runs.count("add:1:7") == 0, "a failed step stops its chain"
    assert stopped.state == "PENDING"
    counted = runs.per_label()
    assert counted[f"errback:{failed.id}"] == 1
    assert counted[f"errback:{failing_step.id}"] == 1


@pytest.mark.parametrize("size", [100, 1000])
def test_a_chord_body_runs_once_with_every_result(on_store, workers, runs, size):
    app = on_store
    double, total = app.tasks["double"], app.tasks["total"]
    started = time.monotonic()
    result = chord(double.s(i) for i in range(size))(total.s())
    workers("-c", "2").wait_ready(2)
    expected = sum(2 * i for i in range(size))
    assert result.get(timeout=60) == expected
    runs.wait(1, f"total:{expected}")
    assert runs.per_label()[f"total:{expected}"] == 1
    assert result.parent.completed_count() == size
    assert time.monotonic() - started < 30
