"""``group``: members sent in one round trip with the ``group`` and ``group_index`` headers, a
``GroupResult`` to read them, ``save``/``restore``, and eager mode."""

from __future__ import annotations

import pytest

from celeriac import chain, group
from celeriac.results.result import GroupResult
from tests.unit.canvas.conftest import drain, peek


def test_members_carry_the_group_id_and_index_and_are_sent_at_once(app, tasks, monkeypatch):
    batches = []
    publish = app.broker.publish

    def spy(batch):
        batches.append(len(batch))
        publish(batch)

    monkeypatch.setattr(app.broker, "publish", spy)
    add = tasks["add"]
    result = group(add.s(i, i) for i in range(5)).apply_async()
    assert batches == [5]
    assert isinstance(result, GroupResult)
    messages = peek(app)
    assert [(m.group, m.group_index) for m in messages] == [(result.id, i) for i in range(5)]
    assert [m.id for m in messages] == [r.id for r in result]


def test_group_result_get_join_and_counts(app, tasks, inline_worker):
    add, fail = tasks["add"], tasks["fail"]
    result = group([add.s(1, 1), add.s(2, 2), add.s(3, 3)]).apply_async()
    assert not result.ready()
    drain(inline_worker(app))
    assert result.get(timeout=1) == [2, 4, 6]
    assert result.join(timeout=1) == [2, 4, 6]
    assert (result.completed_count(), result.successful(), result.failed(), result.ready()) == (
        3,
        True,
        False,
        True,
    )
    mixed = group(add.s(1, 1), fail.s()).apply_async()
    drain(inline_worker(app))
    assert (mixed.completed_count(), mixed.successful(), mixed.failed()) == (1, False, True)
    with pytest.raises(ValueError, match="boom"):
        mixed.get(timeout=1)


def test_partial_arguments_and_options_reach_every_member(app, tasks):
    add = tasks["add"]
    group(add.s(1), add.s(2)).apply_async((10,), queue="other", priority=4)
    messages = peek(app, "other")
    assert [(m.args, m.priority) for m in messages] == [([10, 1], 4), ([10, 2], 4)]


def test_link_error_runs_once_per_failing_member(app, tasks, calls, inline_worker):
    fail, add, old = tasks["fail"], tasks["add"], tasks["old_errback"]
    result = group(fail.s(1), add.s(1, 1), fail.s(2)).apply_async(link_error=old.s())
    drain(inline_worker(app))
    errbacks = [call for call in calls if call[0] == "old_errback"]
    assert errbacks == [("old_errback", result[0].id), ("old_errback", result[2].id)]


def test_a_chain_member_counts_with_its_last_step(app, tasks, inline_worker):
    add = tasks["add"]
    result = group(chain(add.s(1, 1), add.s(1)), add.s(5, 5)).apply_async()
    drain(inline_worker(app))
    assert result.get(timeout=1) == [3, 10]


def test_save_and_restore_by_the_group_id(app, tasks, inline_worker):
    add = tasks["add"]
    result = group(add.s(1, 1), add.s(2, 2)).apply_async()
    assert result.save() is result
    drain(inline_worker(app))
    restored = GroupResult.restore(result.id, app=app)
    assert restored == result
    assert restored.get(timeout=1) == [2, 4]
    restored.delete()
    assert GroupResult.restore(result.id, app=app) is None


def test_task_id_names_the_group_and_freeze_gives_every_member_its_id(app, tasks):
    add = tasks["add"]
    assert group(add.s(1, 1)).apply_async(task_id="g1").id == "g1"
    made = group(add.s(1, 1), add.s(2, 2))
    frozen = made.freeze()
    result = made.apply_async()
    assert [r.id for r in result] == [r.id for r in frozen]


def test_eager_runs_every_member_here(make_app):
    app = make_app(task_always_eager=True)

    @app.task(name="t.add")
    def add(x, y):
        return x + y

    result = group(add.s(i, i) for i in range(4)).apply_async()
    assert result.get() == [0, 2, 4, 6]
    assert result.completed_count() == 4
    assert app.broker.queue_length("celery").total == 0
