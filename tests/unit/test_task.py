"""Tasks: naming, @app.task options, calling in process, eager mode, shared_task."""

from __future__ import annotations

import pytest

from celeriac import Celeriac, Task, shared_task
from celeriac.errors import ConfigurationError, MaxRetriesExceededError
from celeriac.results.result import EagerResult
from celeriac.states import FAILURE, RETRY, SUCCESS

# -- naming -----------------------------------------------------------------------------------


def test_task_name_is_module_dot_function(app):
    @app.task
    def add(x, y):
        return x + y

    assert add.name == f"{__name__}.add"
    assert app.tasks[add.name] is add


def test_explicit_name_wins(app):
    @app.task(name="proj.tasks.add")
    def add(x, y):
        return x + y

    assert add.name == "proj.tasks.add"
    assert app.get_task("proj.tasks.add") is add


def _function_in_main():
    namespace = {"__name__": "__main__"}
    exec("def report():\n    return 'done'\n", namespace)
    return namespace["report"]


def test_function_in_main_takes_the_app_main_name(make_app):
    app = make_app("proj")
    assert app.task(_function_in_main()).name == "proj.report"


def test_function_in_main_without_app_name_keeps_main(make_app):
    app = Celeriac(broker="memory://", set_as_current=False)
    assert app.task(_function_in_main()).name == "__main__.report"


def test_task_is_a_task_instance_that_calls_the_function(app):
    @app.task
    def add(x, y):
        """Add two numbers."""
        return x + y

    assert isinstance(add, Task)
    assert add(2, 3) == 5
    assert add.run(2, 3) == 5
    assert add.__doc__ == "Add two numbers."
    assert repr(add) == f"<@task: {add.name}>"


def test_bound_task_gets_itself_as_first_argument(app):
    @app.task(bind=True)
    def whoami(self):
        return self.name

    assert whoami() == whoami.name


def test_request_outside_a_worker_is_called_directly(app):
    @app.task(bind=True)
    def info(self):
        return self.request

    request = info()
    assert request.called_directly is True
    assert request.task == info.name


# -- options ----------------------------------------------------------------------------------


def test_unknown_task_option_suggests_the_closest(app):
    with pytest.raises(ConfigurationError) as info:

        @app.task(max_retry=3)
        def job():
            return None

    assert "'max_retry'" in str(info.value)
    assert "did you mean 'max_retries'?" in str(info.value)


def test_unknown_task_option_is_not_registered(app):
    def job():
        return None

    with pytest.raises(ConfigurationError):
        app.task(acks_lat=True)(job)
    assert app.task_names() == []


def test_task_options_become_attributes(app):
    @app.task(max_retries=7, acks_late=True, time_limit=30, queue="slow", priority=3)
    def job():
        return None

    assert (job.max_retries, job.acks_late, job.time_limit, job.queue, job.priority) == (
        7,
        True,
        30,
        "slow",
        3,
    )


def test_task_options_do_not_leak_to_other_tasks(app):
    @app.task(acks_late=True)
    def one():
        return None

    @app.task
    def two():
        return None

    assert one.acks_late is True
    assert two.acks_late is None
    assert Task.acks_late is None


def test_custom_base_class(app):
    class Base(Task):
        def describe(self) -> str:
            return f"task {self.name}"

    @app.task(base=Base)
    def job():
        return None

    assert isinstance(job, Base)
    assert job.describe() == f"task {job.name}"


# -- eager ------------------------------------------------------------------------------------


def test_apply_runs_the_task_here_and_returns_an_eager_result(app):
    @app.task
    def add(x, y):
        return x + y

    result = add.apply((2, 3))
    assert isinstance(result, EagerResult)
    assert (result.state, result.get(), result.successful()) == (SUCCESS, 5, True)
    assert app.broker.queue_length("celery").total == 0


def test_apply_records_a_failure_without_raising(app):
    @app.task
    def boom():
        raise ValueError("bad input")

    result = boom.apply()
    assert result.state == FAILURE
    assert result.failed()
    assert isinstance(result.result, ValueError)
    assert "bad input" in (result.traceback or "")
    with pytest.raises(ValueError, match="bad input"):
        result.get()
    assert isinstance(result.get(propagate=False), ValueError)


def test_apply_with_throw_raises(app):
    @app.task
    def boom():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        boom.apply(throw=True)


def test_always_eager_runs_delay_in_process(make_app):
    app = make_app(task_always_eager=True)

    @app.task
    def mul(x, y):
        return x * y

    result = mul.delay(3, 4)
    assert result.get() == 12
    assert app.broker.queue_names() == []


def test_always_eager_still_checks_arguments(make_app):
    app = make_app(task_always_eager=True)

    @app.task
    def mul(x, y):
        return x * y

    with pytest.raises(TypeError):
        mul.delay(3)


def test_always_eager_rejects_the_options_a_worker_would_reject(make_app):
    # eager mode is for tests: a typo must fail there, not first in production
    app = make_app(task_always_eager=True)

    @app.task
    def mul(x, y):
        return x * y

    with pytest.raises(ConfigurationError, match="did you mean 'countdown'"):
        mul.apply_async((3, 4), countdwn=5)
    with pytest.raises(ConfigurationError, match="expected a signature"):
        mul.apply_async((3, 4), link=mul)


def test_eager_failure_propagates_only_when_asked(make_app):
    quiet = make_app(task_always_eager=True)
    loud = make_app(task_always_eager=True, task_eager_propagates=True)

    def fail():
        raise KeyError("missing")

    assert quiet.task(fail).delay().state == FAILURE
    with pytest.raises(KeyError):
        loud.task(fail).delay()


def test_eager_retries_run_again_with_a_growing_retry_count(app):
    seen: list[int] = []

    @app.task(bind=True, max_retries=5)
    def flaky(self):
        seen.append(self.request.retries)
        if self.request.retries < 2:
            raise self.retry(countdown=60)
        return "ok"

    result = flaky.apply()
    assert result.get() == "ok"
    assert seen == [0, 1, 2]
    assert app.broker.queue_length("celery").total == 0


def test_eager_retries_stop_at_max_retries_with_the_original_exception(app):
    calls: list[int] = []

    @app.task(bind=True, max_retries=2)
    def always_fails(self):
        calls.append(self.request.retries)
        try:
            raise ConnectionError("down")
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=1) from exc

    result = always_fails.apply()
    assert calls == [0, 1, 2]
    assert result.state == FAILURE
    assert isinstance(result.result, ConnectionError)


def test_eager_retry_without_exc_past_the_limit_is_max_retries_exceeded(app):
    @app.task(bind=True, max_retries=1)
    def again(self):
        raise self.retry(countdown=1)

    result = again.apply()
    assert isinstance(result.result, MaxRetriesExceededError)
    assert "max_retries=1" in str(result.result)


def test_eager_autoretry(app):
    calls: list[int] = []

    @app.task(autoretry_for=(ConnectionError,), max_retries=3, retry_backoff=True)
    def fetch():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("flaky")
        return len(calls)

    assert fetch.apply().get() == 3


def test_retry_outside_a_worker_is_an_error(app):
    @app.task(bind=True)
    def job(self):
        raise self.retry()

    with pytest.raises(RuntimeError, match="outside a worker"):
        job()


# -- shared_task ------------------------------------------------------------------------------


def test_shared_task_registers_with_the_current_default_app(make_app):
    app = make_app("first")

    @shared_task
    def ping():
        return "pong"

    assert app.tasks[ping.name] is ping
    assert ping.app is app


def test_shared_task_moves_to_an_app_created_later(make_app):
    make_app("first")

    @shared_task(name="shared.ping")
    def ping():
        return "pong"

    later = make_app("later")
    assert later.tasks["shared.ping"] is ping
    assert ping.app is later
    ping.delay()
    assert later.broker.queue_length("celery").ready == 1


def test_app_not_set_as_current_does_not_take_shared_tasks(make_app):
    current = make_app("current")

    @shared_task(name="shared.only")
    def only():
        return None

    private = Celeriac("private", broker="memory://", set_as_current=False)
    assert "shared.only" not in private.tasks
    assert only.app is current


# -- calling a task directly inside a running task --------------------------------------------


def test_task_called_directly_inside_a_running_task_does_not_see_the_outer_request(app, inline_worker):
    @app.task(bind=True)
    def inner(self):
        return [self.request.task, self.request.id, self.request.called_directly]

    @app.task
    def outer():
        return inner()

    result = outer.delay()
    inline_worker(app).run_next()
    task, task_id, called_directly = result.get(timeout=1)
    assert task_id != result.id
    assert task != outer.name
    assert called_directly is True


def test_retry_in_a_task_called_directly_never_resends_the_outer_task(app, inline_worker):
    @app.task(bind=True)
    def inner(self):
        raise self.retry(countdown=0)

    @app.task
    def outer():
        try:
            inner()
        except Exception as exc:
            return type(exc).__name__
        return "no error"

    result = outer.delay()
    inline_worker(app).run_next()
    assert result.state == SUCCESS
    resent = [d.envelope.headers for d in app.broker.fetch(["celery"], 10, 0, "c")]
    assert resent == [], f"the outer task was sent again: {resent}"


def test_eager_runs_call_the_handlers_as_a_worker_does(app):
    """Celery's eager mode calls on_success / on_retry / on_failure and after_return: a test suite
    run with task_always_eager exercises the same handlers as production."""
    calls: list[tuple] = []

    class Tracked(Task):
        def on_success(self, retval, task_id, args, kwargs):
            calls.append(("success", retval, args))

        def on_retry(self, exc, task_id, args, kwargs, einfo):
            calls.append(("retry", type(exc).__name__, einfo.type.__name__))

        def on_failure(self, exc, task_id, args, kwargs, einfo):
            calls.append(("failure", str(exc), "ValueError" in einfo.traceback))

        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            calls.append(("after_return", status))

    @app.task(base=Tracked, bind=True, max_retries=1)
    def flaky(self, x):
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError("down"), countdown=1)
        return x * 2

    @app.task(base=Tracked)
    def broken(x):
        raise ValueError(f"bad {x}")

    assert flaky.apply((21,)).get() == 42
    assert broken.apply((1,)).state == FAILURE
    assert calls == [
        ("retry", "ConnectionError", "ConnectionError"),
        ("after_return", RETRY),
        ("success", 42, (21,)),
        ("after_return", SUCCESS),
        ("failure", "bad 1", True),
        ("after_return", FAILURE),
    ]


def test_an_eager_handler_that_raises_is_logged_and_the_result_stands(app, caplog):
    class Broken(Task):
        def on_success(self, retval, task_id, args, kwargs):
            raise RuntimeError("handler bug")

    @app.task(base=Broken)
    def fine():
        return "ok"

    assert fine.apply().get() == "ok"
    assert "handler of" in caplog.text and "handler bug" in caplog.text
