"""``chain`` / ``|``: Celery's wire form (the rest of the chain reversed in the first message's
embed), each step's result passed on, parents, failures stopping the chain, eager mode."""

from __future__ import annotations

import orjson

from celeriac import chain, chord, group
from tests.unit.canvas.conftest import drain, peek


def test_the_first_message_carries_the_rest_reversed(app, tasks):
    add, mul = tasks["add"], tasks["mul"]
    result = chain(add.s(1, 2), mul.s(10), add.si(0, 1)).apply_async()
    [delivery] = app.broker.fetch(["celery"], 10, 0, "inspector")
    args, _, embed = orjson.loads(delivery.envelope.body)
    assert args == [1, 2]
    assert [step["task"] for step in embed["chain"]] == ["t.add", "t.mul"]  # last step first
    last, middle = embed["chain"]
    assert last["immutable"] and last["options"]["task_id"] == result.id
    assert middle["options"]["task_id"] == result.parent.id
    assert delivery.envelope.headers["id"] == result.parent.parent.id
    assert result.parent.parent.parent is None


def test_each_step_gets_the_previous_result_and_get_returns_the_last(app, tasks, calls, inline_worker):
    add, mul = tasks["add"], tasks["mul"]
    result = (add.s(1, 2) | mul.s(10) | add.s(5)).apply_async()
    assert drain(inline_worker(app)) == 3
    assert calls == [("add", 1, 2), ("mul", 30 // 10 * 1, 10), ("add", 30, 5)]
    assert result.get(timeout=1) == 35
    assert result.parent.get(timeout=1) == 30
    assert result.parent.parent.get(timeout=1) == 3


def test_a_step_is_sent_with_its_parent_and_root_id(app, tasks, inline_worker):
    add = tasks["add"]
    result = chain(add.s(1, 1), add.s(1), add.s(1)).apply_async()
    worker = inline_worker(app)
    worker.run_next()
    [second] = peek(app)
    first_id = result.parent.parent.id
    assert (second.id, second.parent_id, second.root_id) == (result.parent.id, first_id, first_id)
    assert [step["task"] for step in second.embed["chain"]] == ["t.add"]


def test_an_immutable_step_ignores_the_previous_result(app, tasks, calls, inline_worker):
    add = tasks["add"]
    result = chain(add.s(1, 2), add.si(5, 5)).apply_async()
    drain(inline_worker(app))
    assert result.get(timeout=1) == 10


def test_a_failing_step_stops_the_chain_and_runs_its_errbacks_once(app, tasks, calls, inline_worker):
    add, fail, old = tasks["add"], tasks["fail"], tasks["old_errback"]
    result = chain(add.s(1, 2), fail.s(), add.s(100)).apply_async(link_error=old.s())
    drain(inline_worker(app))
    failed_id = result.parent.id
    assert calls == [("add", 1, 2), ("fail", 3), ("old_errback", failed_id)]
    assert result.parent.failed()
    assert result.state == "PENDING"  # the step after the failure never ran


def test_link_goes_to_the_last_step(app, tasks, calls, inline_worker):
    add, record = tasks["add"], tasks["record"]
    chain(add.s(1, 2), add.s(3)).apply_async(link=record.s())
    drain(inline_worker(app))
    assert calls[-1] == ("record", 6)


def test_partial_arguments_go_to_the_first_step(app, tasks, inline_worker):
    add = tasks["add"]
    result = chain(add.s(2), add.s(3)).apply_async((1,))
    drain(inline_worker(app))
    assert result.get(timeout=1) == 6
    assert chain(add.s(2), add.s(3)).delay(10) is not None


def test_chains_join_and_a_chain_from_a_list(tasks):
    add = tasks["add"]
    joined = chain(add.s(1, 1), add.s(2)) | chain(add.s(3), add.s(4))
    assert [step.args for step in joined.tasks] == [(1, 1), (2,), (3,), (4,)]
    assert len(chain([add.s(1, 1), add.s(2)]).tasks) == 2


def test_a_chain_dict_comes_back_as_a_chain(app, tasks):
    made = chain(tasks["add"].s(1, 1), tasks["add"].s(2))
    data = orjson.loads(orjson.dumps(made))
    assert data["subtask_type"] == "chain" and data["task"] == "celery.chain"
    from celeriac import signature

    back = signature(data, app=app)
    assert isinstance(back, chain)
    assert [step.args for step in back.tasks] == [(1, 1), (2,)]


def test_a_group_followed_by_a_task_is_a_chord(tasks):
    add = tasks["add"]
    [step] = chain(group(add.s(1, 1), add.s(2, 2)), add.s(3)).tasks
    assert isinstance(step, chord) and step.body.args == (3,)
    assert isinstance(group(add.s(1, 1)) | add.s(3), chord)


def test_a_group_as_the_last_step_gets_the_previous_result(app, tasks, inline_worker):
    add = tasks["add"]
    result = chain(add.s(1, 1), group(add.s(10), add.s(20))).apply_async()
    drain(inline_worker(app))
    assert result.get(timeout=1) == [12, 22]


def test_eager_runs_the_chain_here_with_the_same_results(make_app, calls):
    app = make_app(task_always_eager=True)

    @app.task(name="t.add")
    def add(x, y):
        return x + y

    @app.task(name="t.fail")
    def fail(x):
        raise ValueError("boom")

    @app.task(name="t.errback")
    def errback(task_id):
        calls.append(task_id)

    result = (add.s(1, 2) | add.s(10) | add.s(100)).apply_async()
    assert result.get() == 113
    assert result.parent.get() == 13
    assert result.parent.parent.get() == 3
    stopped = chain(add.s(1, 2), fail.s(), add.s(1)).apply_async(link_error=errback.s())
    assert stopped.failed()
    assert calls == [stopped.id]
    assert app.broker.queue_length("celery").total == 0


def test_the_rest_of_a_chain_celery_wrote_runs_group_included(app, tasks, inline_worker):
    import celery

    theirs = celery.Celery("theirs", broker="memory://", set_as_current=False)

    @theirs.task(name="t.add", shared=False)
    def add(x, y):  # pragma: no cover - only its signatures are used
        return x + y

    made = celery.chain(add.s(1, 2), add.s(10), celery.group(add.s(100), add.s(200)))
    last = made.freeze()
    rest = [orjson.loads(orjson.dumps(step, default=list)) for step in reversed(made.tasks[1:])]
    rest[0]["kwargs"]["tasks"][0]["options"]["stamped_headers"] = []  # Celery 5.3+ stamps
    first = made.tasks[0]
    tasks["add"].apply_async((1, 2), task_id=first.id, chain=rest)
    drain(inline_worker(app))
    group_id = rest[0]["options"]["task_id"]
    assert app.AsyncResult(made.tasks[1].id).get(timeout=1) == 13
    members = [app.AsyncResult(r.id) for r in last.results]
    assert [member.get(timeout=1) for member in members] == [113, 213]
    assert group_id == last.id
