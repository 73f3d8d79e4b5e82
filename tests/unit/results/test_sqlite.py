"""SQLite result backend in a temporary file: store, read, forget, expire."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from celeriac import AsyncResult
from celeriac.errors import ConfigurationError
from celeriac.results import backend_from_url
from celeriac.results import sqlite as sqlite_results
from celeriac.results.base import PendingResult
from celeriac.results.sqlite import SQLiteResultBackend
from celeriac.states import FAILURE, SUCCESS


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture
def backend(url):
    backend = SQLiteResultBackend(url, expires=60)
    yield backend
    backend.close()


def test_store_then_get(backend):
    backend.store(PendingResult("t1", SUCCESS, {"rows": [1, 2]}, None, "proj.export", 1, "node/9"))
    record = backend.get("t1")
    assert record is not None
    assert (record.state, record.result, record.name, record.retries, record.worker) == (
        SUCCESS,
        {"rows": [1, 2]},
        "proj.export",
        1,
        "node/9",
    )
    assert record.ready


def test_unknown_id_is_none(backend):
    assert backend.get("nothing") is None


def test_later_state_replaces_the_earlier(backend):
    backend.store(PendingResult("t2", FAILURE, ValueError("first"), "tb"))
    backend.store(PendingResult("t2", SUCCESS, "second"))
    record = backend.get("t2")
    assert record is not None
    assert (record.state, record.result, record.traceback) == (SUCCESS, "second", None)


def test_failure_round_trips_with_type_and_traceback(backend):
    backend.store(PendingResult("t3", FAILURE, PermissionError("denied"), "Traceback: line 3"))
    result = AsyncResult("t3", backend)
    assert result.state == FAILURE
    assert result.traceback == "Traceback: line 3"
    with pytest.raises(PermissionError, match="denied"):
        result.get(timeout=1)


def test_results_are_shared_by_backends_on_the_same_file(url, backend):
    other = SQLiteResultBackend(url)
    try:
        backend.store_many([PendingResult("a", SUCCESS, 1), PendingResult("b", SUCCESS, 2)])
        assert AsyncResult("b", other).get(timeout=1) == 2
        assert other.get("a").result == 1
    finally:
        other.close()


def test_forget(backend):
    backend.store(PendingResult("t4", SUCCESS, 1))
    backend.forget("t4")
    assert backend.get("t4") is None


def test_cleanup_deletes_only_results_older_than_expires(backend, monkeypatch):
    clock = [time.time()]
    fake = SimpleNamespace(time=lambda: clock[0], monotonic=time.monotonic, sleep=time.sleep)
    monkeypatch.setattr(sqlite_results, "time", fake)
    backend.store(PendingResult("old", SUCCESS, 1))
    clock[0] += 50
    backend.store(PendingResult("recent", SUCCESS, 2))
    clock[0] += 20  # old is 70 s old, recent 20 s; expires=60
    assert backend.cleanup() == 1
    assert backend.get("old") is None
    assert backend.get("recent") is not None


def test_cleanup_keeps_everything_when_results_never_expire(url):
    backend = SQLiteResultBackend(url, expires=None)
    try:
        backend.store(PendingResult("t", SUCCESS, 1))
        assert backend.cleanup() == 0
        assert backend.get("t") is not None
    finally:
        backend.close()


def test_get_with_timeout_on_a_missing_result_times_out(backend):
    from celeriac import TimeoutError as CeleriacTimeout

    with pytest.raises(CeleriacTimeout):
        AsyncResult("never", backend).get(timeout=0.02)


def test_backend_from_url_picks_the_backend(url):
    backend = backend_from_url(url, "json", ["json"], 10)
    try:
        assert isinstance(backend, SQLiteResultBackend)
        assert backend.expires == 10
    finally:
        backend.close()


def test_backend_from_url_refuses_unknown_schemes():
    with pytest.raises(ConfigurationError, match="supported: sqlite://, memory://"):
        backend_from_url("mongodb://localhost", "json", ["json"], None)


def test_in_memory_sqlite_is_refused_with_a_reason():
    with pytest.raises(ConfigurationError, match="in-memory database cannot be shared"):
        SQLiteResultBackend("sqlite:///:memory:")


def test_app_with_sqlite_broker_keeps_results_in_the_broker_file(make_app, tmp_path):
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    app = make_app(broker=url, backend=None)
    assert isinstance(app.backend, SQLiteResultBackend)
    assert app.backend.url == url
