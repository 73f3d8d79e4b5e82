"""Where celeriac sends Celery's signals, with Celery's senders and arguments.

Task signals run through the real Executor (the child's code) on the memory broker;
publish signals through the producer; the logging and import signals through the
code the worker command calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celeriac import Ignore, Reject, Task
from celeriac.brokers.base import Outgoing
from celeriac.errors import NotRegisteredError, ProtocolError, WorkerLostError
from celeriac.hooks import LostTask
from celeriac.protocol import TaskMessage, encode
from celeriac.signals import (
    Signal,
    after_setup_logger,
    after_setup_task_logger,
    after_task_publish,
    before_task_publish,
    heartbeat_sent,
    import_modules,
    setup_logging,
    task_failure,
    task_internal_error,
    task_postrun,
    task_prerun,
    task_rejected,
    task_retry,
    task_revoked,
    task_success,
    task_unknown,
    worker_process_init,
    worker_process_shutdown,
)
from celeriac.states import FAILURE, IGNORED, REJECTED, RETRY, SUCCESS


@pytest.fixture
def receive() -> Iterator[Callable[[Signal], list[dict[str, Any]]]]:
    """``receive(signal)``: the keyword arguments of every send, in order (disconnected after)."""
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def connect(signal: Signal) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def receiver(**kwargs: Any) -> None:
            kwargs.pop("signal")
            calls.append(kwargs)

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return calls

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


# -- the task in the child --------------------------------------------------------------------


def test_a_successful_task_sends_prerun_success_postrun_in_order_with_celery_arguments(
    app, inline_worker, receive
):
    order: list[str] = []
    seen_request: list[Any] = []

    @app.task
    def add(x, y):
        order.append("body")
        return x + y

    prerun, success, postrun = receive(task_prerun), receive(task_success), receive(task_postrun)
    task_prerun.connect(
        lambda **kw: (order.append("prerun"), seen_request.append(add.request.id)), weak=False
    )
    result = add.apply_async((2, 3), {})
    inline_worker(app).run_next()
    task_prerun.receivers.pop()  # the lambda
    assert order == ["prerun", "body"]
    assert seen_request == [result.id]  # the request is pushed when prerun is sent
    assert prerun == [{"sender": add, "task_id": result.id, "task": add, "args": [2, 3], "kwargs": {}}]
    assert success == [{"sender": add, "result": 5}]
    assert postrun == [
        {
            "sender": add,
            "task_id": result.id,
            "task": add,
            "args": [2, 3],
            "kwargs": {},
            "retval": 5,
            "state": SUCCESS,
        }
    ]


def test_outcome_signals_come_after_the_result_is_recorded_and_the_handlers_ran(app, inline_worker):
    events: list[str] = []

    class Handlers(Task):
        def on_success(self, retval, task_id, args, kwargs):
            events.append("on_success")

    @app.task(base=Handlers)
    def job():
        return 1

    def on_success_signal(sender: Any, **kwargs: Any) -> None:
        events.append(f"task_success, result buffered: {bool(app.hooks._hooks[1]._buffer)}")

    task_success.connect(on_success_signal)
    try:
        job.delay()
        inline_worker(app).run_next()
    finally:
        task_success.disconnect(on_success_signal)
    assert events == ["on_success", "task_success, result buffered: True"]


def test_a_failing_task_sends_task_failure_with_exception_traceback_and_einfo(app, inline_worker, receive):
    @app.task
    def broken(x):
        raise ValueError(f"bad {x}")

    failure, postrun = receive(task_failure), receive(task_postrun)
    result = broken.delay(7)
    inline_worker(app).run_next()
    [call] = failure
    exc = call["exception"]
    assert isinstance(exc, ValueError) and str(exc) == "bad 7"
    assert call["sender"] is broken and call["task_id"] == result.id
    assert (call["args"], call["kwargs"]) == ([7], {})
    assert call["traceback"] is exc.__traceback__ is not None
    einfo = call["einfo"]
    assert einfo.exception is exc and einfo.type is ValueError and einfo.tb is exc.__traceback__
    assert "ValueError: bad 7" in einfo.traceback and str(einfo) == einfo.traceback
    assert [(c["state"], c["retval"]) for c in postrun] == [(FAILURE, exc)]


def test_a_retry_sends_task_retry_with_the_request_and_the_retry_as_reason(app, inline_worker, receive):
    @app.task(bind=True)
    def flaky(self):
        raise self.retry(exc=ConnectionError("down"), countdown=60)

    retries, postrun, failure = receive(task_retry), receive(task_postrun), receive(task_failure)
    result = flaky.delay()
    inline_worker(app).run_next()
    [call] = retries
    assert call["sender"] is flaky
    assert call["request"].id == result.id and call["request"].retries == 0
    reason = call["reason"]
    assert type(reason).__name__ == "Retry" and isinstance(reason.exc, ConnectionError)
    assert call["einfo"].exception is reason
    assert [(c["state"], c["retval"]) for c in postrun] == [(RETRY, reason)]
    assert failure == []


def test_retry_without_throw_sends_no_task_retry(app, inline_worker, receive):
    @app.task(bind=True)
    def carry_on(self):
        self.retry(countdown=60, throw=False)
        return "went on"

    retries, success = receive(task_retry), receive(task_success)
    carry_on.delay()
    inline_worker(app).run_next()
    assert retries == []  # as Celery: the task went on, its outcome is success
    assert success == [{"sender": carry_on, "result": "went on"}]


def test_ignore_and_reject_send_postrun_with_their_state(make_app, inline_worker, receive):
    app = make_app(task_acks_late=True)

    @app.task
    def ignored():
        raise Ignore()

    @app.task
    def rejected():
        raise Reject("no", requeue=False)

    postrun = receive(task_postrun)
    ignored.delay()
    rejected.delay()
    worker = inline_worker(app)
    worker.run_next()
    worker.run_next()
    assert [c["state"] for c in postrun] == [IGNORED, REJECTED]
    assert isinstance(postrun[1]["retval"], Reject)


@pytest.mark.parametrize("acks_late", [True, False])
def test_a_reject_without_requeue_sends_task_failure_as_celery_does(
    make_app, inline_worker, receive, acks_late
):
    """It ends the task for good (dead-lettered, or acked already under early ack): error trackers
    hooked on task_failure see it; a Reject with requeue, which runs again, sends none."""
    app = make_app(task_acks_late=acks_late)

    @app.task
    def final():
        raise Reject("malformed", requeue=False)

    @app.task(bind=True)
    def again(self):
        if not self.request.delivery_info.get("redelivered"):
            raise Reject("later", requeue=True)
        return "second time"

    failures = receive(task_failure)
    final.delay()
    worker = inline_worker(app)
    worker.run_next()
    assert [c["exception"].reason for c in failures] == ["malformed"]
    assert isinstance(failures[0]["exception"], Reject) and failures[0]["sender"] is final
    if acks_late:
        again.delay()
        worker.run_next()
        worker.run_next()
        assert len(failures) == 1


def test_an_expired_message_sends_task_revoked_and_no_run_signals(app, inline_worker, receive):
    @app.task
    def late():
        return "ran"

    revoked, prerun, postrun = receive(task_revoked), receive(task_prerun), receive(task_postrun)
    result = late.apply_async(expires=datetime.now(UTC) - timedelta(seconds=1))
    inline_worker(app).run_next()
    [call] = revoked
    assert call["sender"] is late and call["request"].id == result.id
    assert (call["terminated"], call["signum"], call["expired"]) == (False, None, True)
    assert prerun == [] and postrun == []


def test_a_raising_handler_sends_task_internal_error_and_the_task_keeps_its_outcome(
    app, inline_worker, receive
):
    class Broken(Task):
        def on_success(self, retval, task_id, args, kwargs):
            raise KeyError("handler bug")

    @app.task(base=Broken)
    def job(n):
        return n

    internal, success = receive(task_internal_error), receive(task_success)
    result = job.delay(4)
    inline_worker(app).run_next()
    [call] = internal
    assert call["sender"] is job and call["task_id"] == result.id and call["args"] == [4]
    assert call["request"].id == result.id
    assert isinstance(call["exception"], KeyError) and call["einfo"].internal is True
    assert success == [{"sender": job, "result": 4}]
    assert result.get(timeout=1) == 4


def test_an_unknown_task_sends_task_unknown_with_the_message_name_and_id(app, inline_worker, receive):
    unknown, rejected = receive(task_unknown), receive(task_rejected)
    app.send_task("proj.never_registered", (1,))
    delivery = inline_worker(app).fetch_one()
    inline_worker(app).run(delivery)
    [call] = unknown
    assert call["sender"] is None and call["message"] is delivery
    assert call["name"] == "proj.never_registered" and call["id"] == delivery.envelope.headers["id"]
    assert isinstance(call["exc"], NotRegisteredError) and "proj.never_registered" in str(call["exc"])
    assert rejected == []


def test_a_message_that_cannot_be_decoded_sends_task_rejected(app, inline_worker, receive):
    @app.task
    def known():
        pass

    rejected, unknown = receive(task_rejected), receive(task_unknown)
    envelope = encode(TaskMessage(id="raw", task=known.name, content_type="application/x-python-serialize"))
    app.broker.publish([Outgoing("celery", envelope)])
    delivery = inline_worker(app).fetch_one()
    inline_worker(app).run(delivery)
    [call] = rejected
    assert call["message"] is delivery and isinstance(call["exc"], ProtocolError)
    assert unknown == []


def test_a_failing_receiver_is_logged_and_the_task_still_succeeds(app, inline_worker, caplog):
    @app.task
    def fine():
        return "ok"

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    task_prerun.connect(broken)
    task_postrun.connect(broken)
    try:
        result = fine.delay()
        with caplog.at_level(logging.ERROR, logger="celeriac.signals"):
            inline_worker(app).run_next()
    finally:
        task_prerun.disconnect(broken)
        task_postrun.disconnect(broken)
    assert result.get(timeout=1) == "ok"
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError, RuntimeError]


def test_child_start_and_exit_send_worker_process_init_and_shutdown(app, receive):
    init, shutdown = receive(worker_process_init), receive(worker_process_shutdown)
    app.hooks.after_child_start(0)
    app.hooks.before_child_exit(0)
    assert init == [{"sender": None}]
    [call] = shutdown
    assert call["sender"] is None and call["exitcode"] == 0 and isinstance(call["pid"], int)


def test_a_task_lost_with_its_child_sends_task_failure_from_the_master(app, receive):
    @app.task
    def victim():
        pass

    failure = receive(task_failure)
    lost = WorkerLostError("worker lost while running the task: killed by signal 9")
    app.hooks.after_task_lost(LostTask("t-1", victim.name, lost, "killed", redelivered=False))
    app.hooks.after_task_lost(LostTask("t-2", victim.name, lost, "killed", redelivered=True))
    app.hooks.after_task_lost(LostTask("t-3", victim.name, lost, "killed", False, ended=True))
    [call] = failure  # a redelivered task runs again; one that had ended sent its own signals
    assert call["sender"] is victim and call["task_id"] == "t-1" and call["exception"] is lost
    assert call["args"] is None and call["einfo"].exception is lost


def test_the_heartbeat_hook_sends_heartbeat_sent(app, receive):
    beats = receive(heartbeat_sent)
    app.hooks.on_heartbeat()
    assert beats == [{"sender": None}]


# -- the producer -----------------------------------------------------------------------------


def test_publish_signals_carry_the_task_name_body_headers_and_route(app, receive):
    @app.task
    def add(x, y):
        return x + y

    before, after = receive(before_task_publish), receive(after_task_publish)
    result = add.apply_async((1, 2), {}, queue="celery")
    [call] = before
    assert call["sender"] == add.name
    assert call["body"][:2] == ((1, 2), {})
    assert call["headers"]["id"] == result.id and call["headers"]["task"] == add.name
    assert call["properties"]["correlation_id"] == result.id
    assert (call["exchange"], call["routing_key"]) == ("celery", "celery")
    assert [q.name for q in call["declare"]] == ["celery"]
    assert call["retry_policy"] is None
    [sent] = after
    assert sent["sender"] == add.name and sent["headers"]["id"] == result.id


def test_before_task_publish_may_add_headers_that_are_published(app, inline_worker):
    @app.task(bind=True)
    def traced(self):
        return self.request.message.extra_headers.get("traceparent")

    def inject(headers: dict[str, Any], **kwargs: Any) -> None:
        headers["traceparent"] = "00-abc-def-01"

    before_task_publish.connect(inject)
    try:
        result = traced.delay()
    finally:
        before_task_publish.disconnect(inject)
    inline_worker(app).run_next()
    assert result.get(timeout=1) == "00-abc-def-01"


def test_a_batch_announces_each_message_before_and_after_the_round_trip(app, receive, monkeypatch):
    @app.task
    def double(x):
        return 2 * x

    events: list[str] = []
    publish = app.broker.publish

    def spy(batch: list[Outgoing]) -> None:
        events.append(f"publish {len(batch)}")
        publish(batch)

    monkeypatch.setattr(app.broker, "publish", spy)
    before_task_publish.connect(lambda body, **kw: events.append(f"before {body[0]}"), weak=False)
    after_task_publish.connect(lambda body, **kw: events.append(f"after {body[0]}"), weak=False)
    try:
        double.apply_many([(1,), (2,)])
    finally:
        before_task_publish.receivers.clear()
        after_task_publish.receivers.clear()
    assert events == ["before (1,)", "before (2,)", "publish 2", "after (1,)", "after (2,)"]


def test_eager_calls_publish_nothing_and_send_no_publish_signal(make_app, receive):
    app = make_app(task_always_eager=True)

    @app.task
    def add(x, y):
        return x + y

    before = receive(before_task_publish)
    assert add.delay(1, 2).get() == 3
    assert before == []


# -- worker start: modules and logging --------------------------------------------------------


def test_import_modules_is_sent_with_the_app_before_the_task_modules_are_imported(make_app, receive):
    app = make_app(include=["json"])
    calls = receive(import_modules)
    app.import_task_modules()
    assert calls == [{"sender": app}]


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level restored after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logging_setup_sends_after_setup_logger_and_after_setup_task_logger(root_logging, receive):
    from celeriac.cli.common import setup_logging as cli_setup_logging

    main, task = receive(after_setup_logger), receive(after_setup_task_logger)
    cli_setup_logging("info", "%(message)s")
    args = {
        "sender": None,
        "loglevel": logging.INFO,
        "logfile": None,
        "format": "%(message)s",
        "colorize": False,
    }
    assert main == [{**args, "logger": root_logging}]
    assert task == [{**args, "logger": logging.getLogger("celeriac.task")}]
    assert len(root_logging.handlers) == 1 and root_logging.level == logging.INFO


def test_a_setup_logging_receiver_takes_logging_over(root_logging, receive):
    from celeriac.cli.common import setup_logging as cli_setup_logging

    mine = logging.NullHandler()
    root_logging.handlers[:] = [mine]
    setup, main = receive(setup_logging), receive(after_setup_logger)
    cli_setup_logging("WARNING", "%(message)s", None)
    assert setup == [
        {
            "sender": None,
            "loglevel": logging.WARNING,
            "logfile": None,
            "format": "%(message)s",
            "colorize": False,
        }
    ]
    assert root_logging.handlers == [mine]  # celeriac configured nothing
    assert main == []  # as Celery: the after_setup_* signals follow celeriac's own set-up only


# -- eager mode -------------------------------------------------------------------------------


def test_eager_runs_send_the_task_signals_as_a_worker_does(make_app, receive):
    app = make_app(task_always_eager=True)

    @app.task(bind=True)
    def flaky(self, x):
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError("once"), countdown=0)
        return x

    @app.task
    def broken():
        raise ValueError("eager")

    prerun, retry, success = receive(task_prerun), receive(task_retry), receive(task_success)
    failure, postrun = receive(task_failure), receive(task_postrun)
    result = flaky.delay(8)
    assert result.get() == 8
    broken.apply()
    assert [c["task_id"] for c in prerun] == [result.id, result.id, prerun[2]["task_id"]]
    assert prerun[0]["sender"] is flaky and prerun[0]["args"] == (8,)
    assert [type(c["reason"]).__name__ for c in retry] == ["Retry"]
    assert success == [{"sender": flaky, "result": 8}]
    assert [type(c["exception"]) for c in failure] == [ValueError]
    assert [c["state"] for c in postrun] == [RETRY, SUCCESS, FAILURE]
