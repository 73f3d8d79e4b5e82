"""celeriac: a distributed task queue for Python that speaks Celery's settings and protocol.

``from celery import X`` becomes ``from celeriac import X``. The names of Celery's that
celeriac lacks (``xmap``/``xstarmap``; the
``current_app`` and ``current_task`` proxies) raise ImportError naming the feature and
what to do instead, rather than Python's bare "cannot import name".
"""

from celeriac import _compat
from celeriac._state import shared_task
from celeriac.app import Celeriac, Celery
from celeriac.canvas import Signature, chain, chord, group, maybe_signature, signature, subtask
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
from celeriac.utils import uuid

__version__ = "0.1.0"
__getattr__ = _compat.missing_names(__name__)

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
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
    "__version__",
    "chain",
    "chord",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "subtask",
    "uuid",
]
