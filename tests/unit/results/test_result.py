"""AsyncResult over the memory backend: states, get, propagate, timeout, forget."""

from __future__ import annotations

import threading

import pytest

import celeriac
from celeriac import AsyncResult
from celeriac.errors import ConfigurationError
from celeriac.results.base import PendingResult
from celeriac.results.memory import MemoryResultBackend
from celeriac.states import FAILURE, PENDING, RETRY, REVOKED, STARTED, SUCCESS


@pytest.fixture
def backend():
    backend = MemoryResultBackend("memory://")
    yield backend
    backend.close()


def test_unknown_task_is_pending(backend):
    result = AsyncResult("never-sent", backend)
    assert result.state == PENDING
    assert result.status == PENDING
    assert result.result is None
    assert not result.ready()
    assert not result.successful()
    assert not result.failed()


def test_success_state_and_value(backend):
    backend.store(PendingResult("t1", SUCCESS, {"total": 3}, None, "proj.add", 2, "node/1"))
    result = AsyncResult("t1", backend)
    assert result.state == SUCCESS
    assert result.ready() and result.successful() and not result.failed()
    assert result.get(timeout=1) == {"total": 3}
    assert result.result == {"total": 3}
    assert (result.name, result.retries, result.worker) == ("proj.add", 2, "node/1")
    assert result.date_done is not None
    assert result.date_done.tzinfo is not None


def test_failure_is_raised_by_get_with_its_type(backend):
    backend.store(PendingResult("t2", FAILURE, ZeroDivisionError("division by zero"), "Traceback ...", "t"))
    result = AsyncResult("t2", backend)
    assert result.state == FAILURE
    assert result.failed() and result.ready()
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        result.get(timeout=1)
    assert result.traceback == "Traceback ..."


def test_failure_is_returned_without_propagate(backend):
    backend.store(PendingResult("t3", FAILURE, KeyError("k")))
    value = AsyncResult("t3", backend).get(timeout=1, propagate=False)
    assert isinstance(value, KeyError)


def test_revoked_is_ready_and_raises(backend):
    backend.store(PendingResult("t4", REVOKED, celeriac.errors.TaskRevokedError("expired")))
    result = AsyncResult("t4", backend)
    assert result.ready()
    with pytest.raises(celeriac.errors.TaskRevokedError):
        result.get(timeout=1)


@pytest.mark.parametrize("state", [STARTED, RETRY])
def test_started_and_retry_are_not_ready_and_get_times_out(backend, state):
    backend.store(PendingResult("t5", state, ValueError("x") if state == RETRY else None))
    result = AsyncResult("t5", backend)
    assert result.state == state
    assert not result.ready()
    with pytest.raises(celeriac.TimeoutError):
        result.get(timeout=0.01)


def test_get_on_a_pending_task_raises_timeout_error_naming_the_task(backend):
    result = AsyncResult("slow-task", backend, "proj.slow")
    with pytest.raises(celeriac.TimeoutError) as info:
        result.get(timeout=0.02)
    assert "slow-task" in str(info.value)
    assert "proj.slow" in str(info.value)
    assert isinstance(info.value, TimeoutError)  # builtins.TimeoutError too


def test_get_waits_for_a_result_stored_later(backend, monkeypatch):
    waiting = threading.Event()
    wait = backend._wait_for_change

    def signalling_wait(token: object, until: float) -> None:
        waiting.set()
        wait(token, until)

    monkeypatch.setattr(backend, "_wait_for_change", signalling_wait)

    def finish_later() -> None:
        assert waiting.wait(5)
        backend.store(PendingResult("later", SUCCESS, 42))

    thread = threading.Thread(target=finish_later)
    thread.start()
    try:
        assert AsyncResult("later", backend).get(timeout=5) == 42
    finally:
        thread.join(5)


def test_forget_deletes_the_result(backend):
    backend.store(PendingResult("t6", SUCCESS, 1))
    result = AsyncResult("t6", backend)
    result.forget()
    assert result.state == PENDING


def test_results_compare_by_id(backend):
    assert AsyncResult("a", backend) == AsyncResult("a", None)
    assert AsyncResult("a", backend) != AsyncResult("b", backend)
    assert len({AsyncResult("a"), AsyncResult("a")}) == 1
    assert AsyncResult("a").task_id == "a"


def test_reading_without_a_backend_says_how_to_configure_one(make_app):
    app = make_app(broker="redis://localhost:6379/0", backend=None)  # a broker that keeps no results
    for result in (AsyncResult("x", app=app), AsyncResult("x"), app.AsyncResult("x")):
        with pytest.raises(ConfigurationError, match="no result backend is configured: set result_backend"):
            result.get(timeout=0)


def test_reading_before_any_app_exists_says_to_create_one_or_pass_it():
    with pytest.raises(ConfigurationError, match=r"AsyncResult\('x'\) has no app .* pass app="):
        AsyncResult("x", None).get(timeout=0)


def test_unserialisable_result_is_stored_as_an_error_not_lost(backend):
    backend.store(PendingResult("t7", SUCCESS, object(), name="proj.weird"))
    record = backend.get("t7")
    assert record is not None
    assert record.state == SUCCESS
    assert record.result["exc_type"] == "EncodeError"
    assert "proj.weird" in record.result["exc_message"][0]


def test_memory_backend_cleanup_removes_expired_results(monkeypatch):
    from celeriac.results import memory

    clock = [1_000_000.0]
    fake_time = type("FakeTime", (), {"time": staticmethod(lambda: clock[0])})
    monkeypatch.setattr(memory, "time", fake_time)
    backend = MemoryResultBackend("memory://", expires=60)
    backend.store(PendingResult("old", SUCCESS, 1))
    clock[0] += 50
    backend.store(PendingResult("new", SUCCESS, 2))
    clock[0] += 20
    assert backend.cleanup() == 1
    assert backend.get("old") is None
    assert backend.get("new") is not None


# -- inside a task ----------------------------------------------------------------------------


def test_get_inside_a_task_raises_runtime_error(app, inline_worker):
    @app.task
    def other():
        return 1

    @app.task
    def waits():
        return other.delay().get(timeout=1)

    result = waits.delay()
    inline_worker(app).run_next()
    assert result.state == FAILURE
    with pytest.raises(RuntimeError, match=r"never call result\.get\(\) inside a task"):
        result.get(timeout=1)


def test_get_inside_a_task_is_allowed_with_disable_sync_subtasks_false(app, inline_worker):
    @app.task
    def waits_anyway():
        result = app.AsyncResult("missing")
        try:
            result.get(timeout=0.01, disable_sync_subtasks=False)
        except celeriac.TimeoutError:
            return "timed out"
        return "got it"

    result = waits_anyway.delay()
    inline_worker(app).run_next()
    assert result.get(timeout=1) == "timed out"


# -- which app's backend ----------------------------------------------------------------------


def test_without_an_app_or_backend_the_default_apps_backend_is_read(app):
    app.backend.store(PendingResult("d1", SUCCESS, 5))
    result = AsyncResult("d1")
    assert (result.app, result.backend) == (app, app.backend)
    assert result.get(timeout=1) == 5


def test_app_names_the_backend_when_another_app_is_the_default(make_app):
    first = make_app()
    make_app()  # the default now
    first.backend.store(PendingResult("a1", SUCCESS, "first's"))
    assert AsyncResult("a1", app=first).get(timeout=1) == "first's"
    assert first.AsyncResult("a1").app is first
    assert AsyncResult("a1").state == PENDING  # the default app's backend does not have it


def test_a_handle_made_before_the_app_reads_the_app_created_later(make_app):
    result = AsyncResult("early")
    app = make_app()
    app.backend.store(PendingResult("early", SUCCESS, 1))
    assert result.get(timeout=1) == 1


def test_a_backend_passed_wins_over_the_app(app, backend):
    backend.store(PendingResult("b1", SUCCESS, "given"))
    assert AsyncResult("b1", backend, app=app).get(timeout=1) == "given"


def test_a_handle_never_opens_a_backend_it_does_not_read(make_app):
    app = make_app()
    AsyncResult("lazy", app=app)
    AsyncResult("lazy")
    assert "backend" not in app.__dict__  # the cached backend was not built


def test_info_of_an_unfinished_state_is_its_meta_and_of_a_finished_one_its_value(backend):
    backend.store(PendingResult("s1", STARTED, meta={"pid": 4, "hostname": "n"}))
    backend.store(PendingResult("p1", "PROGRESS", meta={"current": 2}))
    backend.store(PendingResult("r1", RETRY, KeyError("again")))
    assert AsyncResult("s1", backend).info == {"pid": 4, "hostname": "n"}
    assert AsyncResult("p1", backend).result == {"current": 2}
    assert isinstance(AsyncResult("r1", backend).info, KeyError)
    assert AsyncResult("p1", backend).state == "PROGRESS" and not AsyncResult("p1", backend).ready()
