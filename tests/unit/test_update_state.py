"""``Task.update_state`` and custom states on every result backend (memory, SQLite, Redis), read
back through ``AsyncResult.state`` and ``.info`` the way Celery's progress-bar recipes do."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import AsyncResult, Ignore
from celeriac import TimeoutError as CeleriacTimeout
from celeriac.app import Celeriac
from celeriac.context import Request, pop_request, push_request
from celeriac.errors import ConfigurationError
from celeriac.states import FAILURE, PENDING, STARTED, SUCCESS

PROGRESS = "PROGRESS"


_TRACKED: list[AsyncResult] = []


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend_app(request, make_app, tmp_path) -> Iterator[Celeriac]:
    """An app on the memory broker whose results go to each backend in turn."""
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'results.db'}"
    else:
        url = request.getfixturevalue("redis_url")
    yield make_app(backend=url)
    while _TRACKED:  # Redis keys outlive the test otherwise
        _TRACKED.pop().forget()


def _track(result: AsyncResult) -> AsyncResult:
    _TRACKED.append(result)
    return result


def test_progress_is_read_while_the_task_runs_and_the_outcome_replaces_it(backend_app, inline_worker):
    app = backend_app
    seen: list[tuple[str, Any]] = []

    @app.task(bind=True)
    def long(self, n):
        reader = AsyncResult(self.request.id)  # the default app's backend, as in Celery
        for i in range(n):
            self.update_state(state=PROGRESS, meta={"current": i, "total": n})
            seen.append((reader.state, reader.info))
        return n

    result = _track(long.delay(2))
    inline_worker(app).run_next()
    assert seen == [(PROGRESS, {"current": 0, "total": 2}), (PROGRESS, {"current": 1, "total": 2})]
    assert (result.state, result.info, result.result, result.get(timeout=1)) == (SUCCESS, 2, 2, 2)


def test_a_state_stores_the_tasks_name_worker_and_retries_and_any_meta_value(backend_app, inline_worker):
    app = backend_app
    records: list[Any] = []

    @app.task(bind=True)
    def step(self):
        self.update_state(state="CRUNCHING", meta=42)
        records.append(app.backend.get(self.request.id))
        self.update_state(state=PROGRESS, meta={"step": 2})
        records.append(app.backend.get(self.request.id))

    _track(step.apply_async(retries=3))
    inline_worker(app, hostname="node7@box").run_next()
    value, progress = records
    assert (value.state, value.result, value.name, value.retries) == ("CRUNCHING", 42, step.name, 3)
    assert value.worker == f"node7@box/{os.getpid()}" and not value.ready
    # a dict is the state's meta, on every backend alike (as STARTED keeps its pid and hostname)
    assert (progress.state, progress.meta, progress.result) == (PROGRESS, {"step": 2}, None)


def test_a_custom_state_is_not_ready_so_get_waits_for_the_outcome(backend_app):
    app = backend_app

    @app.task
    def job():
        return None

    tid = _track(app.AsyncResult("ext-" + os.urandom(8).hex())).id
    job.update_state(task_id=tid, state=PROGRESS, meta={"done": 1}, traceback="noted", unknown="ignored")
    result = AsyncResult(tid, app=app)
    assert (result.state, result.info, result.traceback, result.ready()) == (
        PROGRESS,
        {"done": 1},
        "noted",
        False,
    )
    with pytest.raises(CeleriacTimeout):
        result.get(timeout=0.05)
    job.update_state(task_id=tid, state=SUCCESS, meta="finished")
    assert result.get(timeout=1) == "finished"


def test_celerys_manual_failure_pattern_fails_the_task_with_its_meta(backend_app, inline_worker):
    app = backend_app

    @app.task(bind=True)
    def refuse(self):
        self.update_state(
            state=FAILURE,
            meta={"exc_type": "ValueError", "exc_message": ["bad input"], "exc_module": "builtins"},
        )
        raise Ignore()

    result = _track(refuse.delay())
    inline_worker(app).run_next()
    assert result.state == FAILURE
    with pytest.raises(ValueError, match="bad input"):
        result.get(timeout=1)


def test_started_reads_back_its_pid_and_hostname_as_info(backend_app, inline_worker):
    app = backend_app
    seen: list[Any] = []

    @app.task(bind=True, track_started=True)
    def tracked(self):
        reader = app.AsyncResult(self.request.id)
        seen.append((reader.state, reader.info))

    _track(tracked.delay())
    inline_worker(app, hostname="n1@h").run_next()
    assert seen == [(STARTED, {"pid": os.getpid(), "hostname": "n1@h"})]


# -- where nothing is stored ------------------------------------------------------------------


def _long(self):
    self.update_state(state=PROGRESS, meta={"current": 1})
    self.update_state(task_id=self.request.id, state=PROGRESS, meta={"current": 2})
    return self.app.AsyncResult(self.request.id).state if self.request.id else "called directly"


def test_run_eagerly_or_called_directly_the_tasks_own_state_is_not_stored(app, make_app):
    long = app.task(bind=True)(_long)
    assert long.apply().get() == PENDING
    assert long() == "called directly"
    eager = make_app(task_always_eager=True).task(bind=True)(_long)
    assert eager.delay().get() == PENDING


def test_without_a_result_backend_update_state_says_to_configure_one(make_app):
    app = make_app(broker="redis://localhost:6379/0", backend=None)  # a broker that keeps no results

    @app.task(bind=True)
    def long(self):
        self.update_state(state=PROGRESS, meta={"current": 1})

    token = push_request(Request(id="t-1", task=long.name, called_directly=False))
    try:
        with pytest.raises(ConfigurationError, match=r"update_state\(state='PROGRESS'\).*set result_backend"):
            long.run()
    finally:
        pop_request(token)
    assert long.apply().get() is None  # eagerly there is nothing to store: no error


def test_a_state_is_required(app):
    @app.task
    def job():
        return None

    with pytest.raises(ValueError, match=r"needs a state, e.g. state='PROGRESS'"):
        job.update_state(task_id="some-id", meta={"x": 1})


def test_states_are_strings_celery_clients_read_as_progress(redis_url, make_app, inline_worker):
    celery = pytest.importorskip("celery")
    app = make_app(backend=redis_url)
    reader = celery.Celery("reader", broker="memory://", backend=redis_url, set_as_current=False)
    seen: list[tuple[str, Any]] = []

    @app.task(bind=True)
    def long(self):
        self.update_state(state=PROGRESS, meta={"current": 3, "total": 4})
        progress = reader.AsyncResult(self.request.id)
        seen.append((progress.state, progress.info))

    result = long.delay()
    try:
        inline_worker(app).run_next()
        assert seen == [(PROGRESS, {"current": 3, "total": 4})]
    finally:
        app.backend.forget(result.id)
        reader.close()


def test_a_success_stored_by_the_running_task_stands_and_says_so(app, inline_worker, caplog):
    @app.task(bind=True)
    def early(self):
        self.update_state(state=SUCCESS, meta="from update_state")
        return "returned"

    result = early.delay()
    with caplog.at_level("WARNING", logger="celeriac.task"):
        inline_worker(app).run_next()
    assert result.get(timeout=1) == "from update_state"
    assert "a stored SUCCESS is final in celeriac" in caplog.text
