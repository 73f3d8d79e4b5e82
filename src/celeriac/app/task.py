"""Celery's ``celery.app.task`` path: the ``Task`` base class (defined in :mod:`celeriac.task`)."""

from __future__ import annotations

from celeriac import _compat
from celeriac.task import Task

__getattr__ = _compat.missing_names(__name__)

__all__ = ["Task"]
