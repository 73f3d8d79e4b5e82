"""Redis result backend on a real Redis: Celery's key layout, expiry, waking waiters, and a stock
Celery client reading celeriac's results and the other way round.

Task ids are uuid4, so the keys of parallel test runs never collide; every key written is deleted
at the end of its test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import orjson
import pytest

from celeriac import AsyncResult
from celeriac import TimeoutError as CeleriacTimeout
from celeriac.errors import ConfigurationError, ContentDisallowedError, TaskRevokedError
from celeriac.results import backend_from_url
from celeriac.results import redis as redis_results
from celeriac.results.base import PendingResult
from celeriac.results.redis import RedisResultBackend, task_key
from celeriac.states import FAILURE, PENDING, RETRY, REVOKED, STARTED, SUCCESS

celery = pytest.importorskip("celery")

PROGRESS = "PROGRESS"


@pytest.fixture
def new_id(redis_url) -> Iterator[Callable[[], str]]:
    """Factory of fresh task ids; their keys are deleted after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(str(uuid.uuid4()))
        return made[-1]

    yield make
    cleaner = RedisResultBackend(redis_url)
    try:
        if made:
            cleaner.conn.call("test cleanup", lambda client: client.delete(*map(task_key, made)))
    finally:
        cleaner.close()


@pytest.fixture
def backend(redis_url) -> Iterator[RedisResultBackend]:
    backend = RedisResultBackend(redis_url, expires=60)
    yield backend
    backend.close()


@pytest.fixture
def celery_app(redis_url) -> Iterator[celery.Celery]:
    """A stock Celery client on the same Redis (memory broker: nothing is sent)."""
    app = celery.Celery("interop", broker="memory://", backend=redis_url, set_as_current=False)
    yield app
    app.close()


def raw(backend: RedisResultBackend, task_id: str) -> bytes | None:
    return backend.conn.call("test read", lambda client: client.get(task_key(task_id)))


# -- layout and round trips --------------------------------------------------------------------


def test_success_is_stored_in_celerys_layout_and_read_back(backend, new_id):
    tid = new_id()
    backend.store(PendingResult(tid, SUCCESS, {"rows": [1, 2]}, None, "proj.export", 2, "n@h/7"))
    doc = orjson.loads(raw(backend, tid))
    assert list(doc) == [
        "status",
        "result",
        "traceback",
        "children",
        "date_done",
        "name",
        "args",
        "kwargs",
        "worker",
        "retries",
        "queue",
        "task_id",
    ]
    assert doc["status"] == SUCCESS and doc["result"] == {"rows": [1, 2]} and doc["task_id"] == tid
    assert (doc["name"], doc["worker"], doc["retries"]) == ("proj.export", "n@h/7", 2)
    assert doc["args"] is doc["kwargs"] is doc["queue"] is doc["children"] is None
    assert datetime.fromisoformat(doc["date_done"]).tzinfo is not None

    record = backend.get(tid)
    assert record is not None and record.ready
    assert (record.state, record.result, record.name, record.retries, record.worker, record.meta) == (
        SUCCESS,
        {"rows": [1, 2]},
        "proj.export",
        2,
        "n@h/7",
        {},
    )
    assert record.date_done == pytest.approx(time.time(), abs=5)


def test_failure_round_trips_as_an_exception_document(backend, new_id):
    tid = new_id()
    backend.store(PendingResult(tid, FAILURE, PermissionError("denied", 13), "Traceback: line 3", "p.t"))
    doc = orjson.loads(raw(backend, tid))
    assert doc["result"] == {
        "exc_type": "PermissionError",
        "exc_message": ["denied", 13],
        "exc_module": "builtins",
    }
    result = AsyncResult(tid, backend)
    assert result.state == FAILURE and result.traceback == "Traceback: line 3"
    with pytest.raises(PermissionError, match="denied"):
        result.get(timeout=1)


def test_retry_and_revoked_store_exceptions_and_only_finished_states_get_date_done(backend, new_id):
    retry_id, revoked_id = new_id(), new_id()
    backend.store_many(
        [
            PendingResult(retry_id, RETRY, ValueError("again"), "tb", "p.t", 1),
            PendingResult(revoked_id, REVOKED, TaskRevokedError("revoked"), None, "p.t"),
        ]
    )
    retry = backend.get(retry_id)
    assert retry is not None and retry.state == RETRY and not retry.ready
    assert isinstance(retry.result, ValueError) and retry.result.args == ("again",)
    assert (retry.retries, retry.date_done) == (1, None)
    revoked = backend.get(revoked_id)
    assert revoked is not None and revoked.ready and isinstance(revoked.result, TaskRevokedError)
    assert revoked.date_done is not None


def test_started_and_custom_states_keep_meta_as_celerys_result(backend, new_id):
    started_id, progress_id = new_id(), new_id()
    backend.store_many(
        [
            PendingResult(started_id, STARTED, None, None, "p.t", 0, "n/1", {"pid": 42, "hostname": "n"}),
            PendingResult(progress_id, PROGRESS, None, None, "p.t", meta={"current": 3, "total": 10}),
        ]
    )
    assert orjson.loads(raw(backend, started_id))["result"] == {"pid": 42, "hostname": "n"}
    assert orjson.loads(raw(backend, progress_id))["date_done"] is None
    started = backend.get(started_id)
    progress = backend.get(progress_id)
    assert started is not None and progress is not None
    assert (started.state, started.result, started.meta) == (STARTED, None, {"pid": 42, "hostname": "n"})
    assert (progress.state, progress.result, progress.meta) == (PROGRESS, None, {"current": 3, "total": 10})
    assert not progress.ready and AsyncResult(progress_id, backend).state == PROGRESS


def test_a_later_state_replaces_the_earlier_and_forget_deletes(backend, new_id):
    tid = new_id()
    backend.store(PendingResult(tid, STARTED, meta={"pid": 1}))
    backend.store(PendingResult(tid, SUCCESS, "done"))
    assert AsyncResult(tid, backend).get(timeout=1) == "done"
    AsyncResult(tid, backend).forget()
    assert backend.get(tid) is None
    assert AsyncResult(tid, backend).state == PENDING


def test_unserialisable_result_is_stored_as_an_error_not_lost(backend, new_id):
    tid = new_id()
    backend.store(PendingResult(tid, SUCCESS, object(), name="proj.weird"))
    record = backend.get(tid)
    assert record is not None and record.result["exc_type"] == "EncodeError"
    assert "proj.weird" in record.result["exc_message"][0]


def test_store_many_writes_a_batch_and_empty_is_a_no_op(backend, new_id):
    ids = [new_id() for _ in range(5)]
    backend.store_many([])
    backend.store_many([PendingResult(tid, SUCCESS, n) for n, tid in enumerate(ids)])
    assert [backend.get(tid).result for tid in ids] == [0, 1, 2, 3, 4]


# -- expiry -------------------------------------------------------------------------------------


def test_keys_expire_after_result_expires_and_cleanup_has_nothing_to_do(backend, new_id):
    tid = new_id()
    backend.store(PendingResult(tid, SUCCESS, 1))
    ttl = backend.conn.call("test ttl", lambda client: client.ttl(task_key(tid)))
    assert 55 <= ttl <= 60
    assert backend.cleanup() == 0


@pytest.mark.parametrize("expires", [None, 0])
def test_results_never_expire_when_result_expires_is_none_or_zero(redis_url, new_id, expires):
    backend = RedisResultBackend(redis_url, expires=expires)
    try:
        tid = new_id()
        backend.store(PendingResult(tid, SUCCESS, 1))
        assert backend.conn.call("test ttl", lambda client: client.ttl(task_key(tid))) == -1
    finally:
        backend.close()


# -- waiting ------------------------------------------------------------------------------------


class _Waiter:
    """Runs ``fn`` in a thread; :meth:`outcome` awaits its value (or re-raises its exception)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn
        self._done = threading.Event()
        self._value: object = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:
            self._error = exc
        finally:
            self._done.set()

    def outcome(self, timeout: float) -> object:
        assert self._done.wait(timeout), "the waiter did not finish"
        if self._error is not None:
            raise self._error
        return self._value

    def join(self) -> None:
        self._thread.join(30)


class _Signalling(RedisResultBackend):
    """Sets ``subscribed`` once a waiter's subscription is confirmed, before it reads the key."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.subscribed = threading.Event()
        self.on_subscribed: Callable[[], None] = lambda: None

    def _confirmed(self, pubsub, key, deadline):
        confirmed = super()._confirmed(pubsub, key, deadline)
        self.on_subscribed()
        self.subscribed.set()
        return confirmed


def test_get_wakes_on_the_published_result_not_on_a_poll(redis_url, new_id, monkeypatch):
    monkeypatch.setattr(redis_results, "RECHECK_INTERVAL", 30.0)  # only the message can wake it quickly
    waiter_side = _Signalling(redis_url)
    writer_side = RedisResultBackend(redis_url)
    tid = new_id()
    waiter = _Waiter(lambda: AsyncResult(tid, waiter_side).get(timeout=20))
    try:
        assert waiter_side.subscribed.wait(10)
        stored_at = time.monotonic()
        writer_side.store(PendingResult(tid, SUCCESS, {"answer": 42}))
        assert waiter.outcome(10) == {"answer": 42}
        assert time.monotonic() - stored_at < 2.0  # far below the 20 s timeout and the 30 s recheck
    finally:
        waiter.join()
        waiter_side.close()
        writer_side.close()


def test_a_result_stored_between_subscribing_and_reading_is_not_missed(redis_url, new_id, monkeypatch):
    monkeypatch.setattr(redis_results, "RECHECK_INTERVAL", 30.0)
    backend = _Signalling(redis_url)
    tid = new_id()
    backend.on_subscribed = lambda: backend.store(PendingResult(tid, SUCCESS, "raced"))
    try:
        started = time.monotonic()
        assert AsyncResult(tid, backend).get(timeout=20) == "raced"
        assert time.monotonic() - started < 2.0
    finally:
        backend.close()


def test_get_of_a_missing_result_times_out(backend, new_id):
    tid = new_id()
    started = time.monotonic()
    with pytest.raises(CeleriacTimeout):
        AsyncResult(tid, backend).get(timeout=0.1)
    with pytest.raises(CeleriacTimeout):
        AsyncResult(tid, backend).get(timeout=0)
    assert time.monotonic() - started < 2.0


def test_get_keeps_waiting_through_unfinished_states(backend, new_id):
    tid = new_id()
    backend.store(PendingResult(tid, STARTED, meta={"pid": 1}))
    with pytest.raises(CeleriacTimeout):
        AsyncResult(tid, backend).get(timeout=0.1)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"])
def test_backend_from_url_makes_a_redis_backend_without_connecting(url):
    backend = backend_from_url(url, "json", ["json"], 10)
    try:
        assert isinstance(backend, RedisResultBackend)
        assert backend.expires == 10
    finally:
        backend.close()


def test_an_app_with_a_redis_result_backend_uses_it(make_app, redis_url):
    app = make_app(backend=redis_url)
    assert isinstance(app.backend, RedisResultBackend)


def test_pickle_must_be_accepted_to_be_written(redis_url):
    with pytest.raises(ConfigurationError, match="result_accept_content"):
        RedisResultBackend(redis_url, serializer="pickle", accept=["json"])


def test_pickle_round_trips_when_accepted_and_is_refused_by_a_json_only_reader(redis_url, new_id, backend):
    pickler = RedisResultBackend(redis_url, serializer="pickle", accept=["json", "pickle"])
    try:
        ok, bad = new_id(), new_id()
        pickler.store_many(
            [PendingResult(ok, SUCCESS, {1, 2}), PendingResult(bad, FAILURE, LookupError("gone"))]
        )
        assert pickler.get(ok).result == {1, 2}
        assert isinstance(pickler.get(bad).result, LookupError)
        with pytest.raises(ContentDisallowedError, match="pickle"):
            backend.get(ok)
    finally:
        pickler.close()


# -- interoperability with a stock Celery client ------------------------------------------------


def test_celery_reads_a_success_stored_by_celeriac(backend, celery_app, new_id):
    tid = new_id()
    backend.store(PendingResult(tid, SUCCESS, {"total": [1, 2]}, None, "proj.add", 1, "n@h/9"))
    result = celery_app.AsyncResult(tid)
    assert result.get(timeout=5) == {"total": [1, 2]}
    assert (result.state, result.name, result.worker, result.retries) == (SUCCESS, "proj.add", "n@h/9", 1)
    assert isinstance(result.date_done, datetime)


def test_celery_reads_a_failure_stored_by_celeriac(backend, celery_app, new_id):
    tid = new_id()
    backend.store(PendingResult(tid, FAILURE, KeyError("missing"), "Traceback: here", "proj.t"))
    result = celery_app.AsyncResult(tid)
    with pytest.raises(Exception) as raised:
        result.get(timeout=5)
    assert type(raised.value).__name__ == "KeyError"
    assert raised.value.args == ("missing",)
    assert result.state == FAILURE and result.traceback == "Traceback: here"


def test_celery_reads_started_and_progress_meta_stored_by_celeriac(backend, celery_app, new_id):
    started_id, progress_id = new_id(), new_id()
    backend.store(PendingResult(started_id, STARTED, meta={"pid": 7, "hostname": "n"}))
    backend.store(PendingResult(progress_id, PROGRESS, meta={"current": 5}))
    started = celery_app.AsyncResult(started_id)
    assert (started.state, started.info) == (STARTED, {"pid": 7, "hostname": "n"})
    progress = celery_app.AsyncResult(progress_id)
    assert (progress.state, progress.info) == (PROGRESS, {"current": 5})


def test_celery_waiting_in_get_is_woken_by_celeriacs_publish(backend, celery_app, new_id):
    tid = new_id()
    result = celery_app.AsyncResult(tid)
    celery_app.backend.on_task_call(None, tid)  # subscribe now, as apply_async does
    waiter = _Waiter(lambda: result.get(timeout=10))
    try:
        backend.store(PendingResult(tid, SUCCESS, "woken"))
        assert waiter.outcome(10) == "woken"
    finally:
        waiter.join()


def test_celeriac_reads_a_success_stored_by_celery(backend, celery_app, new_id):
    tid = new_id()
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    celery_app.backend.store_result(tid, {"when": when, "n": [1, 2]}, SUCCESS)
    record = backend.get(tid)
    assert record is not None
    assert (record.state, record.result) == (SUCCESS, {"when": when, "n": [1, 2]})
    assert record.date_done == pytest.approx(time.time(), abs=5)
    assert AsyncResult(tid, backend).get(timeout=5) == {"when": when, "n": [1, 2]}


def test_celeriac_reads_a_failure_stored_by_celery(backend, celery_app, new_id):
    tid = new_id()
    celery_app.backend.mark_as_failure(tid, ValueError("bad input", 3), traceback="Traceback: celery")
    result = AsyncResult(tid, backend)
    assert result.state == FAILURE and result.traceback == "Traceback: celery"
    with pytest.raises(ValueError, match="bad input") as raised:
        result.get(timeout=5)
    assert raised.value.args == ("bad input", 3)


def test_celeriac_reads_celerys_update_state_meta_and_started(backend, celery_app, new_id):
    progress_id, started_id = new_id(), new_id()
    celery_app.backend.store_result(progress_id, {"current": 5, "total": 9}, PROGRESS)  # update_state
    celery_app.backend.mark_as_started(started_id, pid=11, hostname="celery@h")
    progress = backend.get(progress_id)
    started = backend.get(started_id)
    assert progress is not None and started is not None
    assert (progress.state, progress.meta, progress.result) == (PROGRESS, {"current": 5, "total": 9}, None)
    assert (started.state, started.meta) == (STARTED, {"pid": 11, "hostname": "celery@h"})


def test_celeriac_reads_celerys_pickled_results_when_pickle_is_accepted(redis_url, new_id):
    app = celery.Celery(
        "interop-pickle",
        broker="memory://",
        backend=redis_url,
        set_as_current=False,
        config_source={"result_serializer": "pickle", "accept_content": ["json", "pickle"]},
    )
    ours = RedisResultBackend(redis_url, accept=["json", "pickle"])
    try:
        ok, bad = new_id(), new_id()
        app.backend.store_result(ok, {"a": (1, 2)}, SUCCESS)
        app.backend.mark_as_failure(bad, ZeroDivisionError("zero"))
        assert ours.get(ok).result == {"a": (1, 2)}
        failed = ours.get(bad).result
        assert isinstance(failed, ZeroDivisionError) and failed.args == ("zero",)
    finally:
        ours.close()
        app.close()
