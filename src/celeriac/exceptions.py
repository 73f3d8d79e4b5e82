"""Celery's ``celery.exceptions`` path: the exception names a Celery project catches or raises.

Each name is celeriac's own class (from :mod:`celeriac.errors`), so ``except`` clauses
written for Celery catch what celeriac raises. Five names are Celery's spellings of
a celeriac class with the same meaning: ``CeleryError`` (every celeriac error),
``TaskPredicate`` (``Retry``, ``Reject`` and ``Ignore``), ``NotRegistered``,
``ImproperlyConfigured`` (a bad setting, URL or argument) and ``OperationalError``
(the broker cannot be reached, after the publish retries). Celery names celeriac
has no counterpart for raise ImportError saying what to do instead
(:data:`celeriac._compat.MISSING`).
"""

from __future__ import annotations

from celeriac import _compat
from celeriac.errors import (
    BrokerConnectionError,
    CeleriacError,
    ChordError,
    ConfigurationError,
    Ignore,
    MaxRetriesExceededError,
    NotRegisteredError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskControl,
    TaskRevokedError,
    TimeLimitExceeded,
    TimeoutError,
    WorkerLostError,
)

CeleryError = CeleriacError
TaskPredicate = TaskControl
NotRegistered = NotRegisteredError
ImproperlyConfigured = ConfigurationError
OperationalError = BrokerConnectionError

__getattr__ = _compat.missing_names(__name__)

__all__ = [
    "CeleryError",
    "ChordError",
    "Ignore",
    "ImproperlyConfigured",
    "MaxRetriesExceededError",
    "NotRegistered",
    "OperationalError",
    "Reject",
    "Retry",
    "SoftTimeLimitExceeded",
    "TaskPredicate",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]
