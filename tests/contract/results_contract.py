"""The result-backend contract: what every backend in ``celeriac.results`` does the same way.

Subclasses supply ``make_backend(expires)`` and say how time passes for expiry:
backends that expire by a sweep (``cleanup``) read ``time.time`` from their
module, which the test moves (``clock_module``); a backend whose server expires
keys (Redis) is polled until the key is gone.
"""

from __future__ import annotations

import threading
import time
import uuid
from types import ModuleType, SimpleNamespace

import pytest

from celeriac import AsyncResult
from celeriac.hooks import FAILURE, PENDING, READY_STATES, RETRY, REVOKED, STARTED, SUCCESS
from celeriac.results.base import PendingResult, ResultBackend


class ProjectError(Exception):
    """An exception of user code, importable by the reader."""


def made_up_module_error() -> Exception:
    """An exception whose module the reader never imported."""
    kind = type("LedgerError", (Exception,), {"__module__": "ledger_that_is_not_imported"})
    return kind("unbalanced", 3)


class ResultBackendContract:
    """Subclasses define ``make_backend(expires)``; task ids are fresh uuids."""

    #: the module whose ``time`` the backend reads to date results (None: the server expires keys)
    clock_module: ModuleType | None = None
    #: two backends made from the same URL see the same results (each memory:// backend is its own)
    shared_by_url = True

    def make_backend(self, expires: float | None) -> ResultBackend:
        raise NotImplementedError

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture
    def opened(self):
        """``open(expires)`` makes a backend; all are closed and their results forgotten after."""
        made: list[ResultBackend] = []

        def open_backend(expires: float | None = 60.0) -> ResultBackend:
            made.append(self.make_backend(expires))
            return made[-1]

        self._ids: list[str] = []
        yield open_backend
        for backend in made:
            for task_id in self._ids:
                backend.forget(task_id)
            backend.close()

    @pytest.fixture
    def backend(self, opened) -> ResultBackend:
        return opened()

    def tid(self) -> str:
        self._ids.append(str(uuid.uuid4()))
        return self._ids[-1]

    @pytest.fixture
    def clock(self, monkeypatch):
        """Wall-clock time the test moves (only for backends that sweep)."""
        if self.clock_module is None:
            return None
        now = [time.time()]
        fake = SimpleNamespace(time=lambda: now[0], monotonic=time.monotonic, sleep=time.sleep)
        monkeypatch.setattr(self.clock_module, "time", fake)
        return now

    # -- store and read -------------------------------------------------------------------------

    def test_unknown_id_is_pending(self, backend):
        tid = self.tid()
        assert backend.get(tid) is None
        result = AsyncResult(tid, backend)
        assert result.state == PENDING
        assert not result.ready()

    def test_store_then_get_keeps_every_field(self, backend):
        tid = self.tid()
        backend.store(PendingResult(tid, SUCCESS, {"rows": [1, 2]}, None, "proj.export", 2, "node/9"))
        record = backend.get(tid)
        assert record is not None
        assert (record.task_id, record.state, record.result) == (tid, SUCCESS, {"rows": [1, 2]})
        assert (record.name, record.retries, record.worker) == ("proj.export", 2, "node/9")
        assert record.date_done is not None and abs(record.date_done - time.time()) < 60
        assert AsyncResult(tid, backend).get(timeout=1) == {"rows": [1, 2]}

    def test_store_many_writes_every_item_and_an_empty_batch_is_nothing(self, backend):
        ids = [self.tid() for _ in range(5)]
        backend.store_many([PendingResult(tid, SUCCESS, n) for n, tid in enumerate(ids)])
        backend.store_many([])
        assert [backend.get(tid).result for tid in ids] == [0, 1, 2, 3, 4]

    def test_a_later_state_replaces_the_earlier(self, backend):
        tid = self.tid()
        backend.store(PendingResult(tid, STARTED, meta={"pid": 41}))
        backend.store(PendingResult(tid, FAILURE, ValueError("first"), "tb"))
        backend.store(PendingResult(tid, SUCCESS, "second"))
        record = backend.get(tid)
        assert (record.state, record.result, record.traceback) == (SUCCESS, "second", None)

    @pytest.mark.parametrize("later", [STARTED, RETRY, FAILURE, REVOKED])
    def test_a_success_is_never_replaced_by_a_later_state_of_a_rerun(self, backend, later):
        tid, other = self.tid(), self.tid()
        backend.store(PendingResult(tid, SUCCESS, "done"))
        value = ValueError("re-run") if later != STARTED else None
        backend.store_many([PendingResult(tid, later, value, "tb"), PendingResult(other, later, value, "tb")])
        record = backend.get(tid)
        assert (record.state, record.result) == (SUCCESS, "done")
        assert backend.get(other).state == later  # the rest of the batch is written

    def test_results_are_shared_by_backends_on_the_same_url(self, opened):
        writer, reader = opened(), opened()
        tid = self.tid()
        writer.store(PendingResult(tid, SUCCESS, 7))
        if self.shared_by_url:
            assert reader.get(tid).result == 7
        else:
            assert reader.get(tid) is None

    def test_forget_deletes_the_result(self, backend):
        tid = self.tid()
        backend.store(PendingResult(tid, SUCCESS, 1))
        backend.forget(tid)
        assert backend.get(tid) is None
        backend.forget(tid)  # forgetting what is not there is fine

    # -- states ---------------------------------------------------------------------------------

    @pytest.mark.parametrize("state", [SUCCESS, FAILURE, REVOKED, STARTED, RETRY])
    def test_only_finished_states_are_ready(self, backend, state):
        tid = self.tid()
        value = ProjectError("x") if state in (FAILURE, REVOKED, RETRY) else None
        backend.store(PendingResult(tid, state, value))
        record = backend.get(tid)
        assert record.state == state
        assert record.ready is (state in READY_STATES)
        assert AsyncResult(tid, backend).ready() is record.ready
        if record.ready:
            assert record.date_done is not None

    def test_progress_meta_of_an_unfinished_state_round_trips(self, backend):
        tid = self.tid()
        backend.store(PendingResult(tid, STARTED, meta={"pid": 4242, "hostname": "node"}))
        record = backend.get(tid)
        assert (record.state, record.meta, record.ready) == (
            STARTED,
            {"pid": 4242, "hostname": "node"},
            False,
        )

    # -- exceptions -----------------------------------------------------------------------------

    def test_a_failure_round_trips_with_its_type_args_and_traceback(self, backend):
        tid = self.tid()
        backend.store(PendingResult(tid, FAILURE, ProjectError("denied", 7), "Traceback: line 3"))
        record = backend.get(tid)
        assert type(record.result) is ProjectError
        assert record.result.args == ("denied", 7)
        assert record.traceback == "Traceback: line 3"
        with pytest.raises(ProjectError, match="denied"):
            AsyncResult(tid, backend).get(timeout=1)

    def test_an_exception_of_a_module_never_imported_comes_back_by_name(self, backend):
        tid = self.tid()
        backend.store(PendingResult(tid, FAILURE, made_up_module_error()))
        value = backend.get(tid).result
        assert isinstance(value, Exception)
        assert (type(value).__name__, type(value).__module__) == (
            "LedgerError",
            "ledger_that_is_not_imported",
        )
        assert value.args == ("unbalanced", 3)

    @pytest.mark.parametrize("state", [RETRY, REVOKED])
    def test_retry_and_revoked_keep_their_exception(self, backend, state):
        tid = self.tid()
        backend.store(PendingResult(tid, state, ProjectError(state.lower())))
        value = backend.get(tid).result
        assert type(value) is ProjectError and value.args == (state.lower(),)

    def test_an_unserialisable_result_is_stored_as_an_error_not_lost(self, backend):
        tid = self.tid()
        backend.store(PendingResult(tid, SUCCESS, object(), name="proj.weird"))
        record = backend.get(tid)
        assert record.state == SUCCESS
        assert record.result["exc_type"] == "EncodeError"
        assert "proj.weird" in record.result["exc_message"][0]

    # -- waiting --------------------------------------------------------------------------------

    def test_wait_returns_a_result_another_backend_stores_while_it_waits(self, opened, monkeypatch):
        backend = opened()
        writer = opened() if self.shared_by_url else backend  # as a worker would: not the waiter
        tid = self.tid()
        backend.store(PendingResult(tid, STARTED))
        looked = threading.Event()
        real_get = backend.get

        def get(task_id):
            record = real_get(task_id)
            looked.set()
            return record

        monkeypatch.setattr(backend, "get", get)

        def finish() -> None:
            assert looked.wait(10)
            writer.store(PendingResult(tid, SUCCESS, 42))

        thread = threading.Thread(target=finish)
        thread.start()
        try:
            record = backend.wait(tid, timeout=None)  # rechecks at least every second or so
        finally:
            thread.join(10)
        assert record is not None and (record.state, record.result) == (SUCCESS, 42)

    def test_a_result_stored_between_looking_and_waiting_is_not_missed(self, opened, monkeypatch):
        """The result lands just after the waiter's read found nothing, before it starts
        waiting for a change: the waiter must not sleep until its timeout."""
        backend = opened()
        writer = opened() if self.shared_by_url else backend
        tid = self.tid()
        real_get = backend.get

        def get(task_id):
            record = real_get(task_id)
            if record is None:
                writer.store(PendingResult(tid, SUCCESS, 42))
            return record

        monkeypatch.setattr(backend, "get", get)
        started = time.monotonic()
        record = backend.wait(tid, timeout=2)
        assert record is not None and record.result == 42
        assert time.monotonic() - started < 1, "the waiter slept until its timeout"

    def test_wait_times_out_on_an_unfinished_task(self, backend):
        tid = self.tid()
        backend.store(PendingResult(tid, STARTED))
        started = time.monotonic()
        assert backend.wait(tid, timeout=0.05) is None
        assert time.monotonic() - started >= 0.05

    # -- expiry ---------------------------------------------------------------------------------

    def test_results_expire_after_result_expires(self, opened, clock):
        backend = opened(expires=1)
        old, recent = self.tid(), self.tid()
        backend.store(PendingResult(old, SUCCESS, 1))
        if clock is None:  # the server expires the key
            deadline = time.monotonic() + 10
            while backend.get(old) is not None:
                assert time.monotonic() < deadline, "the result did not expire"
                time.sleep(0.02)
            assert backend.cleanup() == 0
            return
        clock[0] += 0.6
        backend.store(PendingResult(recent, SUCCESS, 2))
        clock[0] += 0.6  # old is 1.2 s old, recent 0.6 s; expires=1
        assert backend.cleanup() == 1
        assert backend.get(old) is None
        assert backend.get(recent).result == 2
        assert backend.cleanup() == 0

    def test_results_are_kept_when_result_expires_is_none(self, opened, clock):
        backend = opened(expires=None)
        tid = self.tid()
        backend.store(PendingResult(tid, SUCCESS, 1))
        if clock is not None:
            clock[0] += 10 * 365 * 86400
        assert backend.cleanup() == 0
        assert backend.get(tid).result == 1
