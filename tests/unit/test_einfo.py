"""ExceptionInfo: the ``einfo`` of ``on_failure``/``on_retry``, with billiard's attribute names."""

from __future__ import annotations

import sys
import traceback

import pytest

from celeriac.einfo import ExceptionInfo


def _raise(message: str) -> None:
    raise ValueError(message)


def test_built_inside_an_except_block_it_reads_the_exception_being_handled():
    try:
        _raise("bad")
    except ValueError:
        einfo = ExceptionInfo()
        expected = traceback.format_exc()
    assert einfo.type is ValueError
    assert isinstance(einfo.exception, ValueError) and einfo.exception.args == ("bad",)
    assert einfo.traceback == expected
    assert str(einfo) == einfo.traceback
    assert repr(einfo) == "<ExceptionInfo: ValueError('bad')>"
    assert einfo.internal is False
    assert traceback.extract_tb(einfo.tb)[-1].name == "_raise"
    assert einfo.exc_info == (ValueError, einfo.exception, einfo.tb)


def test_from_an_exception_it_keeps_the_traceback_text_it_is_given():
    try:
        _raise("given")
    except ValueError as exc:
        caught = exc
    einfo = ExceptionInfo.from_exception(caught, "Traceback: only the task's frames\n")
    assert (einfo.type, einfo.exception, einfo.tb) == (ValueError, caught, caught.__traceback__)
    assert str(einfo) == "Traceback: only the task's frames\n"
    assert "_raise" in ExceptionInfo.from_exception(caught).traceback  # formatted when not given


def test_the_exc_info_tuple_and_the_internal_flag_are_celerys_arguments():
    try:
        _raise("tuple")
    except ValueError:
        exc_info = sys.exc_info()
    einfo = ExceptionInfo(exc_info, internal=True)  # type: ignore[arg-type]
    assert einfo.exception is exc_info[1] and einfo.internal is True


def test_outside_an_except_block_it_says_what_to_pass():
    with pytest.raises(ValueError, match=r"needs exc_info=\(type, exc, tb\)"):
        ExceptionInfo()
