# Make sure the app is loaded when Django (or anything else) imports the package, so that
# @shared_task uses it.
from .celery import app as celery_app

__all__ = ("celery_app",)
