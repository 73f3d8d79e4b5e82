"""Public API guard: what ``import celeriac`` offers Celery users, and nothing by accident."""

from __future__ import annotations

import pytest

import celeriac
from celeriac import errors

CELERY_NAMES = (
    "Celery",
    "Celeriac",
    "Task",
    "Queue",
    "Exchange",
    "shared_task",
    "AsyncResult",
    "Retry",
    "Reject",
    "Ignore",
    "SoftTimeLimitExceeded",
    "TimeLimitExceeded",
    "MaxRetriesExceededError",
    "WorkerLostError",
)


def test_all_is_sorted():
    assert celeriac.__all__ == sorted(celeriac.__all__)


def test_all_has_no_duplicates():
    assert len(set(celeriac.__all__)) == len(celeriac.__all__)


@pytest.mark.parametrize("name", celeriac.__all__)
def test_every_name_in_all_exists(name):
    assert hasattr(celeriac, name)


@pytest.mark.parametrize("name", CELERY_NAMES)
def test_names_celery_users_need_are_exported(name):
    assert name in celeriac.__all__
    assert getattr(celeriac, name) is not None


def test_star_import_gives_exactly_all():
    namespace: dict[str, object] = {}
    exec("from celeriac import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == celeriac.__all__


def test_public_modules_are_not_in_all():
    assert not {"app", "task", "config", "protocol", "brokers", "worker", "cli"} & set(celeriac.__all__)


def test_version_is_a_string():
    assert isinstance(celeriac.__version__, str)
    assert celeriac.__version__.count(".") >= 1


def test_exported_exceptions_share_one_base():
    for name in celeriac.__all__:
        value = getattr(celeriac, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, celeriac.CeleriacError), name


def test_task_control_exceptions_are_not_failures_to_catch_by_accident():
    for name in ("Retry", "Reject", "Ignore"):
        assert issubclass(getattr(celeriac, name), errors.TaskControl)


def test_celeriac_timeout_error_is_also_the_builtin_one():
    assert issubclass(celeriac.TimeoutError, TimeoutError)


def test_errors_module_all_is_sorted_and_complete():
    assert errors.__all__ == sorted(errors.__all__)
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert set(errors.__all__) == defined


def test_celery_is_celeriac():
    assert celeriac.Celery is celeriac.Celeriac
