"""The task side of a worker run, as Celery has it: ``self.request``'s fields, ``before_start``,
and the ``einfo`` the handlers get."""

from __future__ import annotations

import traceback
from typing import Any

from celeriac import Exchange, Queue, Task
from celeriac.brokers.base import Outgoing
from celeriac.einfo import ExceptionInfo
from celeriac.hooks import Hooks
from celeriac.protocol import TaskMessage, encode
from celeriac.states import FAILURE, RETRY, SUCCESS

# -- request fields ---------------------------------------------------------------------------


def _fields(request: Any) -> dict[str, Any]:
    names = ("headers", "priority", "reply_to", "correlation_id", "hostname", "is_eager", "called_directly")
    return {name: getattr(request, name) for name in names}


def test_the_request_carries_the_messages_headers_and_properties_and_the_node_name(app, inline_worker):
    seen: dict[str, Any] = {}

    @app.task(bind=True)
    def look(self):
        seen.update(_fields(self.request), delivery_info=dict(self.request.delivery_info))

    result = look.apply_async(headers={"x-tenant": "acme"}, priority=5, reply_to="replies")
    inline_worker(app, hostname="node1@box").run_next()
    delivery_info = seen.pop("delivery_info")
    assert seen == {
        "headers": {"x-tenant": "acme"},
        "priority": 5,
        "reply_to": "replies",
        "correlation_id": result.id,
        "hostname": "node1@box",
        "is_eager": False,
        "called_directly": False,
    }
    assert {k: delivery_info[k] for k in ("exchange", "routing_key", "priority", "redelivered")} == {
        "exchange": "celery",  # Queue('celery') is bound to an exchange of its name, as in Celery
        "routing_key": "celery",
        "priority": 5,
        "redelivered": False,
    }


def test_delivery_info_names_the_exchange_and_routing_key_the_queue_is_declared_with(make_app, inline_worker):
    app = make_app(
        task_queues=(Queue("reports", Exchange("reporting", type="topic"), routing_key="daily.#"),)
    )
    seen: dict[str, Any] = {}

    @app.task(bind=True)
    def look(self):
        seen.update(self.request.delivery_info)

    look.apply_async(queue="reports")
    inline_worker(app).run_next(["reports"])
    assert (seen["exchange"], seen["routing_key"], seen["queue"]) == ("reporting", "daily.#", "reports")


def test_headers_are_none_without_custom_ones_and_never_show_celerys_own(app, inline_worker):
    seen: list[Any] = []

    @app.task(bind=True)
    def look(self):
        seen.append(self.request.headers)

    look.delay()
    celery_sent = TaskMessage(
        id="from-celery",
        task=look.name,
        extra_headers={
            "stamped_headers": [],
            "stamps": {},
            "replaced_task_nesting": 0,
            "x-request-id": "r-1",
        },
    )
    app.broker.publish([Outgoing("celery", encode(celery_sent))])
    worker = inline_worker(app)
    worker.run_next()
    worker.run_next()
    assert seen == [None, {"x-request-id": "r-1"}]


def test_an_eager_request_is_celerys_eager_one(app):
    seen: dict[str, Any] = {}

    @app.task(bind=True)
    def look(self):
        seen.update(_fields(self.request), delivery_info=dict(self.request.delivery_info))

    look.apply(headers={"x-tenant": "acme"}, priority=3)
    delivery_info = seen.pop("delivery_info")
    assert seen["is_eager"] is True and seen["called_directly"] is False
    assert (seen["headers"], seen["priority"]) == ({"x-tenant": "acme"}, 3)
    assert seen["hostname"]  # this host's name, as Celery's apply sets it
    assert delivery_info == {"is_eager": True, "exchange": None, "routing_key": None, "priority": 3}


def test_always_eager_passes_the_send_options_to_the_request(make_app):
    app = make_app(task_always_eager=True)
    seen: list[Any] = []

    @app.task(bind=True)
    def look(self):
        seen.append((self.request.headers, self.request.priority))

    look.apply_async(headers={"x-trace": "t"}, priority=2)
    assert seen == [({"x-trace": "t"}, 2)]


# -- before_start -----------------------------------------------------------------------------


class Starting(Task):
    events: list[tuple[Any, ...]] = []

    def before_start(self, task_id, args, kwargs):
        self.events.append(("before_start", task_id, tuple(args), dict(kwargs), self.request.id))


def test_before_start_runs_with_the_request_pushed_after_the_hooks_and_before_the_body(app, inline_worker):
    events: list[tuple[Any, ...]] = []
    Starting.events = events

    class Watch(Hooks):
        def before_task(self, request):
            events.append(("before_task",))

    app.add_hooks(Watch())

    @app.task(base=Starting)
    def add(x, y):
        events.append(("body",))
        return x + y

    result = add.apply_async((2,), {"y": 3})
    inline_worker(app).run_next()
    assert result.get(timeout=1) == 5
    assert events == [("before_task",), ("before_start", result.id, (2,), {"y": 3}, result.id), ("body",)]


def test_what_before_start_raises_is_the_tasks_failure_and_the_body_does_not_run(app, inline_worker):
    ran: list[str] = []
    failures: list[str] = []

    class Refusing(Task):
        def before_start(self, task_id, args, kwargs):
            raise PermissionError("not now")

        def on_failure(self, exc, task_id, args, kwargs, einfo):
            failures.append(type(exc).__name__)

    @app.task(base=Refusing)
    def job():
        ran.append("body")

    result = job.delay()
    inline_worker(app).run_next()
    assert result.state == FAILURE and isinstance(result.result, PermissionError)
    assert (ran, failures) == ([], ["PermissionError"])


def test_apply_calls_before_start_too(app):
    events: list[tuple[Any, ...]] = []
    Starting.events = events

    @app.task(base=Starting)
    def mul(x, y):
        return x * y

    assert mul.apply((3, 4), task_id="eager-1").get() == 12
    assert events == [("before_start", "eager-1", (3, 4), {}, "eager-1")]


# -- einfo ------------------------------------------------------------------------------------


class Handlers(Task):
    calls: list[tuple[str, Any]] = []

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_failure", einfo))

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_retry", einfo))

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        self.calls.append((status, einfo))


def test_on_failure_and_after_return_get_an_exception_info_like_celerys(app, inline_worker):
    calls: list[tuple[str, Any]] = []
    Handlers.calls = calls

    @app.task(base=Handlers)
    def fail(key):
        raise KeyError(key)

    result = fail.delay("k")
    inline_worker(app).run_next()
    (handler, einfo), (status, einfo_after) = calls
    assert (handler, status) == ("on_failure", FAILURE)
    assert isinstance(einfo, ExceptionInfo) and einfo_after is einfo
    assert einfo.type is KeyError and isinstance(einfo.exception, KeyError) and einfo.exception.args == ("k",)
    assert str(einfo) == einfo.traceback == result.traceback  # the text logged and stored
    assert "raise KeyError(key)" in einfo.traceback
    assert traceback.extract_tb(einfo.tb)[-1].name == "fail"


def test_on_retry_gets_the_reasons_exception_info(app, inline_worker):
    calls: list[tuple[str, Any]] = []
    Handlers.calls = calls

    @app.task(bind=True, base=Handlers)
    def job(self):
        try:
            {}["missing"]
        except KeyError as exc:
            raise self.retry(exc=exc, countdown=60) from exc

    job.delay()
    inline_worker(app).run_next()
    (handler, einfo), (status, _) = calls
    assert (handler, status) == ("on_retry", RETRY)
    assert isinstance(einfo, ExceptionInfo) and einfo.type is KeyError
    assert "KeyError: 'missing'" in str(einfo)


def test_after_return_gets_no_einfo_when_the_task_succeeded(app, inline_worker):
    calls: list[tuple[str, Any]] = []
    Handlers.calls = calls

    @app.task(base=Handlers)
    def fine():
        return 1

    fine.delay()
    inline_worker(app).run_next()
    assert calls == [(SUCCESS, None)]
