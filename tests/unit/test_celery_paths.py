"""Celery's import paths with ``celery`` replaced by ``celeriac``: every name works, or says why not.

The Celery package installed for the interoperability tests is the reference: for each
module a project imports from, every public name of Celery's is either importable from
the celeriac module of the same path, or raises ImportError naming the feature and what
to do instead, never Python's bare "cannot import name".
"""

from __future__ import annotations

import importlib
import logging

import celery
import celery.app.task
import celery.canvas
import celery.exceptions
import celery.result
import celery.schedules
import celery.signals
import celery.states
import pytest

import celeriac
from celeriac import _compat, errors
from celeriac.context import in_worker_task
from celeriac.results.result import EagerResult
from celeriac.states import FAILURE, SUCCESS

#: The modules whose every public Celery name is covered.
FULLY_COVERED = {
    "celery.signals": (celery.signals, "celeriac.signals"),
    "celery": (celery, "celeriac"),
    "celery.exceptions": (celery.exceptions, "celeriac.exceptions"),
    "celery.result": (celery.result, "celeriac.result"),
    "celery.schedules": (celery.schedules, "celeriac.schedules"),
    "celery.states": (celery.states, "celeriac.states"),
    "celery.app.task": (celery.app.task, "celeriac.app.task"),
    "celery.canvas": (celery.canvas, "celeriac.canvas"),
}
#: ``celery/__init__.py``'s ``__all__`` as written (at run time its lazy module lists every
#: attribute, version strings included), plus the canvas names it exports lazily.
CELERY_TOP_LEVEL = (
    *("Celery", "bugreport", "shared_task", "Task", "current_app", "current_task", "maybe_signature"),
    *("chain", "chord", "chunks", "group", "signature", "xmap", "xstarmap", "uuid", "Signature", "subtask"),
)


def _celery_names() -> list[tuple[str, str]]:
    pairs = []
    for name, (module, _) in FULLY_COVERED.items():
        for attr in CELERY_TOP_LEVEL if module is celery else module.__all__:
            pairs.append((name, attr))
    return sorted(pairs)


@pytest.mark.parametrize(("celery_module", "name"), _celery_names())
def test_every_public_celery_name_is_importable_or_says_what_to_do(celery_module, name):
    target = FULLY_COVERED[celery_module][1]
    try:
        exec(f"from {target} import {name}", {})
    except ImportError as exc:
        message = str(exc)
        assert message.startswith(f"{target}.{name} is not available: "), message
        assert len(message) > len(f"{target}.{name} is not available: ") + 20, message


@pytest.mark.parametrize(
    "statement",
    [
        "from celeriac import Celery, shared_task, states, Task, uuid",
        "from celeriac import Exchange, Queue",  # kombu's
        "from celeriac.result import AsyncResult, GroupResult, ResultSet, EagerResult, allow_join_result",
        "from celeriac.exceptions import Retry, Reject, Ignore, SoftTimeLimitExceeded, TimeLimitExceeded",
        "from celeriac.exceptions import MaxRetriesExceededError, WorkerLostError, TaskRevokedError",
        "from celeriac.exceptions import CeleryError, NotRegistered, ImproperlyConfigured, OperationalError",
        "from celeriac.exceptions import TaskPredicate, TimeoutError",
        "from celeriac.states import PENDING, SUCCESS, FAILURE, READY_STATES, PROPAGATE_STATES",
        "from celeriac.utils.log import get_task_logger, get_logger",
        "from celeriac.app.task import Task",
        "from celeriac import states; states.SUCCESS",
        "from celeriac import chain, group, signature, Signature, maybe_signature, subtask",
        "from celeriac.canvas import chain, group, signature, Signature, maybe_signature",
        "import celeriac.result; celeriac.result.AsyncResult",
    ],
)
def test_the_import_lines_of_celerys_guides_work(statement):
    exec(statement, {})


@pytest.mark.parametrize(
    ("statement", "feature"),
    [
        ("from celeriac import xmap", "xmap"),
        ("from celeriac.canvas import xstarmap", "xstarmap"),
        ("from celeriac.schedules import crontab", "periodic tasks"),
        ("from celeriac.schedules import schedule", "periodic tasks"),
        ("from celeriac.schedules import solar", "periodic tasks"),
        ("from celeriac import current_app", "proxy"),
        ("import celeriac; celeriac.xmap", "xmap"),
    ],
)
def test_a_missing_feature_fails_at_import_naming_it(statement, feature):
    with pytest.raises(ImportError, match=feature) as caught:
        exec(statement, {})
    assert " is not available: " in str(caught.value)


def test_schedules_message_says_what_to_run_until_beat_lands():
    with pytest.raises(ImportError) as caught:
        exec("from celeriac.schedules import crontab", {})
    message = str(caught.value)
    assert "celeriac.schedules.crontab" in message
    assert "not implemented" in message
    assert "celeriac call" in message


def test_other_unknown_names_stay_attribute_errors():
    for module in (celeriac, celeriac.exceptions, celeriac.result, celeriac.states):
        assert not hasattr(module, "no_such_name")
    with pytest.raises(ImportError, match="cannot import name"):
        exec("from celeriac import no_such_name", {})


@pytest.mark.parametrize(("module", "names"), sorted(_compat.MISSING.items()))
def test_names_said_missing_are_really_missing(module, names):
    present = set(vars(importlib.import_module(module))) & set(names)
    assert present == set(), f"{module} has {present} now: drop them from _compat.MISSING"


def test_celery_modules_map_to_celeriac_modules_that_exist():
    for target in set(_compat.CELERY_MODULES.values()):
        importlib.import_module(target)


# -- exceptions ----------------------------------------------------------------------------------


def test_celerys_exception_names_are_celeriacs_classes():
    from celeriac import exceptions

    assert exceptions.CeleryError is errors.CeleriacError
    assert exceptions.TaskPredicate is errors.TaskControl
    assert exceptions.NotRegistered is errors.NotRegisteredError
    assert exceptions.ImproperlyConfigured is errors.ConfigurationError
    assert exceptions.OperationalError is errors.BrokerConnectionError
    for name in ("Retry", "Reject", "Ignore", "SoftTimeLimitExceeded", "TimeLimitExceeded", "TimeoutError"):
        assert getattr(exceptions, name) is getattr(errors, name)
    assert sorted(exceptions.__all__) == exceptions.__all__
    assert all(hasattr(exceptions, name) for name in exceptions.__all__)


def test_an_except_clause_written_for_celery_catches_what_the_app_raises(app):
    from celeriac.exceptions import CeleryError, NotRegistered

    with pytest.raises(NotRegistered):
        app.get_task("proj.nope")
    with pytest.raises(CeleryError):
        app.conf.no_such_setting = 1


# -- results -------------------------------------------------------------------------------------


def _eager(value, state=SUCCESS):
    return EagerResult(f"id-{value}", state, value)


def test_result_set_is_a_set_of_results_with_celerys_methods():
    from celeriac.result import GroupResult, ResultSet

    first, second = _eager(1), _eager(2)
    results = ResultSet([first])
    results.add(second)
    results.add(first)
    assert results.results == [first, second]
    assert results.ready() and not results.waiting() and results.successful()
    assert results.completed_count() == 2
    assert results.get() == results.join() == [1, 2]
    results.discard(_eager(3))
    results.remove(first)
    with pytest.raises(KeyError):
        results.remove(first)
    results.update([first, second])
    assert results.results == [second, first]
    assert issubclass(GroupResult, ResultSet)
    assert GroupResult("g", [first]).id == "g"


def test_result_set_reports_a_failure():
    from celeriac.result import ResultSet

    boom = ValueError("boom")
    results = ResultSet([_eager(1), EagerResult("bad", FAILURE, boom)])
    assert results.failed() and not results.successful()
    assert results.get(propagate=False)[1] is boom
    with pytest.raises(ValueError):
        results.get()


def test_allow_join_result_lets_a_task_wait_in_the_block_only(app):
    from celeriac.result import allow_join_result

    result = app.AsyncResult("some-id")
    token = in_worker_task.set(True)  # as inside a task run by a worker
    try:
        with pytest.raises(RuntimeError, match="never call result.get"):
            result.get(timeout=0.01)
        with allow_join_result():
            assert in_worker_task.get() is False
        assert in_worker_task.get() is True
    finally:
        in_worker_task.reset(token)


# -- logging -------------------------------------------------------------------------------------


def test_task_logger_keeps_its_name_and_hangs_under_celeriac_task(caplog):
    from celeriac.utils.log import get_logger, get_task_logger

    logger = get_task_logger("proj.tasks_paths_test")
    assert logger.name == "proj.tasks_paths_test"
    assert logger.parent is logging.getLogger("celeriac.task")
    assert get_logger("proj.util_paths_test").parent is logging.getLogger("celeriac")
    with caplog.at_level(logging.INFO):
        logger.info("hello from a task")
    assert "hello from a task" in caplog.text


def test_task_logger_names_of_celeriac_itself_are_reserved():
    from celeriac.utils.log import get_task_logger

    for name in ("celeriac", "celeriac.task"):
        with pytest.raises(RuntimeError, match="reserved"):
            get_task_logger(name)


# -- Task base classes ---------------------------------------------------------------------------


def test_app_task_is_a_base_class_bound_to_the_app(app, inline_worker):
    calls = []

    class Tracked(app.Task):
        max_retries = 7

        def on_success(self, retval, task_id, args, kwargs):
            calls.append(("success", self.name, retval))

    @app.task(base=Tracked)
    def add(x, y):
        return x + y

    assert Tracked.app is app
    assert add.app is app and isinstance(add, Tracked) and isinstance(add, celeriac.Task)
    assert add.max_retries == 7
    result = add.delay(2, 3)
    inline_worker(app).run_next()
    assert result.get(timeout=1) == 5
    assert calls == [("success", add.name, 5)]
    assert app.Task is app.Task
    assert celeriac.Celery("other", broker="memory://").Task is not app.Task


def test_shared_task_takes_a_base_class_too(app, inline_worker):
    class Base(celeriac.Task):
        def on_failure(self, exc, task_id, args, kwargs, einfo):
            failures.append(type(exc).__name__)

    failures: list[str] = []

    @celeriac.shared_task(base=Base, bind=True)
    def fail(self):
        raise KeyError("x")

    assert isinstance(fail, Base) and fail.app is app
    result = fail.delay()
    inline_worker(app).run_next()
    assert result.state == FAILURE
    assert failures == ["KeyError"]


def test_celery_app_task_path_is_celeriacs_task():
    from celeriac.app.task import Task

    assert Task is celeriac.Task


def test_uuid_gives_a_fresh_task_id():
    first, second = celeriac.uuid(), celeriac.uuid()
    assert first != second and len(first) == 36
