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


def test_reading_without_a_backend_says_how_to_configure_one():
    with pytest.raises(ConfigurationError, match="result_backend"):
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
