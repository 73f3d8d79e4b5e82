"""``link`` and ``link_error``: the embed's callbacks and errbacks, run by the worker after a task."""

from __future__ import annotations

import orjson

from tests.unit.canvas.conftest import drain, peek


def test_link_and_link_error_travel_in_celerys_embed(app, tasks):
    add, old = tasks["add"], tasks["old_errback"]
    tasks["add"].apply_async((1, 2), link=add.s(10), link_error=[old.s()])
    [delivery] = app.broker.fetch(["celery"], 10, 0, "inspector")
    args, kwargs, embed = orjson.loads(delivery.envelope.body)
    assert (args, kwargs) == ([1, 2], {})
    assert embed["chain"] is None and embed["chord"] is None
    [callback] = embed["callbacks"]
    [errback] = embed["errbacks"]
    assert callback == {
        "task": "t.add",
        "args": [10],
        "kwargs": {},
        "options": {},
        "subtask_type": None,
        "immutable": False,
        "chord_size": None,
    }
    assert errback["task"] == "t.old_errback"


def test_a_callback_gets_the_result_first_with_parent_and_root(app, tasks, inline_worker):
    add = tasks["add"]
    first = add.apply_async((1, 2), link=add.s(10))
    worker = inline_worker(app)
    worker.run_next()
    [message] = peek(app)
    assert (message.task, message.args) == ("t.add", [3, 10])
    assert (message.parent_id, message.root_id) == (first.id, first.id)


def test_callbacks_run_after_success_only(app, tasks, calls, inline_worker):
    add, record = tasks["add"], tasks["record"]
    add.apply_async((1, 2), link=[record.s("a"), record.si("fixed")])
    assert drain(inline_worker(app)) == 3
    assert calls == [("add", 1, 2), ("record", 3, "a"), ("record", "fixed")]
    calls.clear()
    tasks["fail"].apply_async((1,), link=record.s("never"))
    drain(inline_worker(app))
    assert calls == [("fail", 1)]


def test_old_style_errback_is_sent_with_the_task_id(app, tasks, calls, inline_worker):
    failing = tasks["fail"].apply_async((1,), link_error=tasks["old_errback"].s())
    assert drain(inline_worker(app)) == 2
    assert calls == [("fail", 1), ("old_errback", failing.id)]


def test_new_style_errback_is_called_here_with_request_exc_and_traceback(app, tasks, calls, inline_worker):
    failing = tasks["fail"].apply_async((1,), link_error=tasks["new_errback"].s(tag="t"))
    assert drain(inline_worker(app)) == 1  # called in the worker, not sent
    assert calls == [("fail", 1), ("new_errback", failing.id, "ValueError('boom')", True, "t")]


def test_a_bound_errback_takes_the_old_form(app, calls, tasks, inline_worker):
    @app.task(name="t.bound_errback", bind=True)
    def bound_errback(self, task_id, *rest):
        calls.append(("bound", task_id, rest))

    failing = tasks["fail"].apply_async((1,), link_error=bound_errback.s())
    drain(inline_worker(app))
    assert calls[-1] == ("bound", failing.id, ())


def test_each_errback_runs_once_and_not_after_success(app, tasks, calls, inline_worker):
    old = tasks["old_errback"].s()
    tasks["add"].apply_async((1, 2), link_error=old)
    tasks["fail"].apply_async((), link_error=[old, tasks["new_errback"].s()])
    drain(inline_worker(app))
    assert [call[0] for call in calls] == ["add", "fail", "new_errback", "old_errback"]


def test_a_retry_runs_no_callback_until_the_task_succeeds(app, calls, tasks, inline_worker):
    @app.task(name="t.flaky", bind=True)
    def flaky(self):
        calls.append(("flaky", self.request.retries))
        if self.request.retries < 1:
            raise self.retry(countdown=0)
        return "ok"

    flaky.apply_async(link=tasks["record"].s(), link_error=tasks["old_errback"].s())
    drain(inline_worker(app))
    assert calls == [("flaky", 0), ("flaky", 1), ("record", "ok")]


def test_signature_link_and_link_error_are_sent_like_the_options(app, tasks, calls, inline_worker):
    sig = tasks["fail"].s(1)
    sig.link_error(tasks["old_errback"].s())
    sig.link(tasks["record"].s())
    result = sig.apply_async()
    drain(inline_worker(app))
    assert calls == [("fail", 1), ("old_errback", result.id)]


def test_options_a_celery_producer_adds_are_dropped_not_refused(app, tasks, calls, inline_worker):
    callback = dict(tasks["record"].s("c"))
    callback["options"] = {"reply_to": "abc", "chord": None, "stamped_headers": [], "queue": "celery"}
    tasks["add"].apply_async((1, 2), link=callback)
    drain(inline_worker(app))
    assert calls == [("add", 1, 2), ("record", 3, "c")]


def test_eager_runs_callbacks_and_errbacks_in_process(make_app, calls):
    app = make_app(task_always_eager=True)

    @app.task(name="t.add")
    def add(x, y):
        calls.append(("add", x, y))
        return x + y

    @app.task(name="t.fail")
    def fail():
        raise ValueError("boom")

    @app.task(name="t.errback")
    def errback(task_id):
        calls.append(("errback", task_id))

    assert add.apply_async((1, 2), link=add.s(10)).get() == 3
    assert calls == [("add", 1, 2), ("add", 3, 10)]
    failed = fail.apply_async(link_error=errback.s())
    assert calls[-1] == ("errback", failed.id)
