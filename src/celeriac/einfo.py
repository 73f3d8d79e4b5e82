"""``ExceptionInfo``: what ``on_failure`` and ``on_retry`` get as ``einfo``.

Celery passes its handlers a ``billiard.einfo.ExceptionInfo``, and handlers written
for it read ``einfo.traceback`` (the formatted text), ``einfo.exception``,
``einfo.type`` and ``einfo.tb``, or print ``str(einfo)``. :class:`ExceptionInfo`
keeps those names, so such a handler runs unchanged; a project imports it from
here (``from celeriac.einfo import ExceptionInfo`` for ``from billiard.einfo import
ExceptionInfo``).

One difference, on purpose: ``exception`` is the task's exception itself, not
billiard's pickling wrapper around it, because the worker never sends it to another
process (the result backend stores the exception by type, message and module).

This module imports nothing of celeriac, so every layer may use it.
"""

from __future__ import annotations

import sys
import traceback as tb_module
from types import TracebackType

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class ExceptionInfo:
    """An exception with its traceback, formatted once."""

    __slots__ = ("exception", "internal", "tb", "traceback", "type")

    def __init__(
        self,
        exc_info: ExcInfo | None = None,
        internal: bool = False,
        *,
        formatted: str | None = None,
    ) -> None:
        """``exc_info`` as :func:`sys.exc_info` returns it (by default: the exception being
        handled now). ``formatted`` is the traceback text when the caller already has it
        (the worker formats it without its own frames)."""
        kind, exception, tb = exc_info if exc_info is not None else sys.exc_info()
        if kind is None or exception is None:
            raise ValueError("ExceptionInfo() outside an except block needs exc_info=(type, exc, tb)")
        #: the exception's class
        self.type: type[BaseException] = kind
        #: the exception raised
        self.exception: BaseException = exception
        #: the traceback object (for :mod:`traceback` functions)
        self.tb: TracebackType | None = tb
        #: the formatted traceback, as logged and stored with the result
        self.traceback: str = (
            formatted if formatted is not None else "".join(tb_module.format_exception(kind, exception, tb))
        )
        #: True for an error of the worker rather than of the task (Celery's flag; kept for handlers)
        self.internal = internal

    @classmethod
    def from_exception(cls, exc: BaseException, formatted: str | None = None) -> ExceptionInfo:
        """The info of ``exc`` (its own ``__traceback__``), optionally with its traceback text."""
        return cls((type(exc), exc, exc.__traceback__), formatted=formatted)

    @property
    def exc_info(self) -> ExcInfo:
        """``(type, exception, tb)``, as :func:`sys.exc_info` gives it."""
        return self.type, self.exception, self.tb

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"


__all__ = ["ExceptionInfo"]
