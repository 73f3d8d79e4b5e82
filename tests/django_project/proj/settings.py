"""Settings of the test project: SQLite database, celeriac configured under the CELERY_ namespace."""

import os

SECRET_KEY = "only-for-tests"
# True so the test sees the worker's warning about it
DEBUG = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",  # an app without tasks.py: autodiscovery skips it
    "notes.apps.NotesConfig",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DJANGO_TEST_DB"],
    }
}
# dictConfig disables every logger it does not name: the worker must keep its own lines anyway
LOGGING = {"version": 1, "disable_existing_loggers": True}

CELERY_BROKER_URL = os.environ["DJANGO_TEST_BROKER_URL"]
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_TIME_LIMIT = 60
