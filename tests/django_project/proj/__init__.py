"""Importing the project imports its celeriac app, so ``@shared_task`` uses it."""

from proj.celery import app as celery_app

__all__ = ("celery_app",)
