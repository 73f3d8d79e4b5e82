"""celeriac: a distributed task queue for Python that speaks Celery's settings and protocol."""

from celeriac._state import shared_task
from celeriac.app import Celeriac, Celery
from celeriac.errors import (
    CeleriacError,
    ConfigurationError,
    Ignore,
    MaxRetriesExceededError,
    NotRegisteredError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    TimeoutError,
    WorkerLostError,
)
from celeriac.protocol.entities import Exchange, Queue
from celeriac.results.result import AsyncResult
from celeriac.task import Task

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "Celeriac",
    "CeleriacError",
    "Celery",
    "ConfigurationError",
    "Exchange",
    "Ignore",
    "MaxRetriesExceededError",
    "NotRegisteredError",
    "Queue",
    "Reject",
    "Retry",
    "SoftTimeLimitExceeded",
    "Task",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
    "__version__",
    "shared_task",
]
