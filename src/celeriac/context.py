"""Execution context shared by the worker and the result handles."""

from __future__ import annotations

import contextvars

#: True while a worker runs task code, so ``AsyncResult.get()`` inside a task can refuse.
in_worker_task: contextvars.ContextVar[bool] = contextvars.ContextVar("in_worker_task", default=False)
