"""Celery's ``celery.utils`` path: the helpers Celery projects import from it."""

from __future__ import annotations

import uuid as _uuid


def uuid() -> str:
    """A new random task id (a UUID4 string), as Celery's ``celery.utils.uuid``."""
    return str(_uuid.uuid4())


__all__ = ["uuid"]
