"""Stored exceptions: Celery's layout, rebuilt without importing anything."""

from __future__ import annotations

import sys

import pytest

from celeriac.errors import MaxRetriesExceededError, NotRegisteredError
from celeriac.results.base import exception_from_dict, exception_to_dict


class PaymentDeclined(Exception):
    """A user exception in an imported module."""


class Outer:
    class NestedError(Exception):
        pass


def roundtrip(exc: BaseException) -> BaseException:
    return exception_from_dict(exception_to_dict(exc))


def test_layout_is_celerys():
    assert exception_to_dict(ValueError("bad", 3)) == {
        "exc_type": "ValueError",
        "exc_message": ["bad", 3],
        "exc_module": "builtins",
    }


@pytest.mark.parametrize(
    "exc", [ValueError("bad value"), KeyError("k"), ZeroDivisionError("division by zero"), OSError(2, "nope")]
)
def test_builtin_exceptions_round_trip_to_the_same_type_and_args(exc):
    rebuilt = roundtrip(exc)
    assert type(rebuilt) is type(exc)
    assert rebuilt.args == exc.args


def test_user_exception_in_an_imported_module_is_rebuilt_as_that_class():
    rebuilt = roundtrip(PaymentDeclined("card 4242", 17))
    assert type(rebuilt) is PaymentDeclined
    assert rebuilt.args == ("card 4242", 17)


def test_nested_exception_class_is_found_by_qualified_name():
    rebuilt = roundtrip(Outer.NestedError("inner"))
    assert type(rebuilt) is Outer.NestedError


def test_celeriac_exceptions_round_trip():
    assert type(roundtrip(MaxRetriesExceededError("limit"))) is MaxRetriesExceededError
    assert str(roundtrip(NotRegisteredError("task 'x' is not registered"))) == "task 'x' is not registered"


def test_unknown_module_gives_a_made_up_class_of_the_same_name_and_imports_nothing():
    module = "celeriac_unit_no_such_module.errors"
    rebuilt = exception_from_dict(
        {"exc_type": "QuotaExceeded", "exc_message": ["over"], "exc_module": module}
    )
    assert type(rebuilt).__name__ == "QuotaExceeded"
    assert type(rebuilt).__module__ == module
    assert isinstance(rebuilt, Exception)
    assert rebuilt.args == ("over",)
    assert module not in sys.modules
    assert "celeriac_unit_no_such_module" not in sys.modules


def test_importable_but_not_imported_module_is_not_imported(tmp_path, monkeypatch):
    (tmp_path / "celeriac_unit_side_effect.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.imported').touch()\n"
        "class SideEffectError(Exception):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rebuilt = exception_from_dict(
        {"exc_type": "SideEffectError", "exc_message": [], "exc_module": "celeriac_unit_side_effect"}
    )
    assert type(rebuilt).__name__ == "SideEffectError"
    assert "celeriac_unit_side_effect" not in sys.modules
    assert not (tmp_path / "celeriac_unit_side_effect.imported").exists()


def test_made_up_class_is_the_same_class_each_time():
    data = {"exc_type": "Gone", "exc_message": [], "exc_module": "celeriac_unit_elsewhere"}
    assert type(exception_from_dict(data)) is type(exception_from_dict(data))


@pytest.mark.parametrize(
    ("module", "name"),
    [("os", "system"), ("builtins", "dict"), ("builtins", "eval"), ("subprocess", "Popen")],
)
def test_names_that_are_not_exception_classes_are_never_called(module, name):
    rebuilt = exception_from_dict({"exc_type": name, "exc_message": ["echo pwned"], "exc_module": module})
    assert isinstance(rebuilt, Exception)
    assert type(rebuilt).__name__ == name
    assert rebuilt.args == ("echo pwned",)


def test_arguments_that_cannot_be_stored_are_kept_as_repr():
    stored = exception_to_dict(ValueError(object.__new__(Outer)))
    assert stored["exc_message"][0].startswith("<")
    assert "Outer" in stored["exc_message"][0]


def test_exception_whose_constructor_rejects_the_args_still_comes_back():
    class NeedsTwo(Exception):
        def __init__(self, a, b):
            super().__init__(a, b)

    data = {"exc_type": "NeedsTwo", "exc_message": ["only one"], "exc_module": __name__}
    globals()["NeedsTwo"] = NeedsTwo
    try:
        rebuilt = exception_from_dict(data)
    finally:
        del globals()["NeedsTwo"]
    assert isinstance(rebuilt, Exception)
    assert rebuilt.args == ("only one",)


def test_non_dict_value_becomes_a_plain_exception():
    rebuilt = exception_from_dict("something broke")
    assert type(rebuilt) is Exception
    assert rebuilt.args == ("something broke",)
