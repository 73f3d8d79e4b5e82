"""Celery's ``celery.result`` path: the result handles a Celery project imports.

``AsyncResult`` for one task, ``ResultSet`` for several, ``GroupResult`` for
several sent together under one group id, ``EagerResult`` for a task run in the
calling process, and ``allow_join_result``. They live in
:mod:`celeriac.results.result`; names celeriac lacks raise ImportError saying what to
do instead (:data:`celeriac._compat.MISSING`).
"""

from __future__ import annotations

from celeriac import _compat
from celeriac.results.result import AsyncResult, EagerResult, GroupResult, ResultSet, allow_join_result

__getattr__ = _compat.missing_names(__name__)

__all__ = ["AsyncResult", "EagerResult", "GroupResult", "ResultSet", "allow_join_result"]
