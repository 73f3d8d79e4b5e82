"""Celery's ``celery.schedules`` path, kept for the day periodic tasks land.

Periodic tasks (beat) are not implemented yet, and a schedule object with nothing
to run it would be a silent difference: ``from celeriac.schedules import crontab``
(or ``schedule``, ``solar``, ...) raises ImportError that says so and what to run
instead (:data:`celeriac._compat.MISSING`).
"""

from __future__ import annotations

from celeriac import _compat

__getattr__ = _compat.missing_names(__name__)

__all__: list[str] = []
