"""The project's app, as in Celery's Django guide with the import line changed."""

import os

from celeriac import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
# every setting is read from Django's settings, as CELERY_<NAME>
app.config_from_object("django.conf:settings", namespace="CELERY")
# the tasks.py of every installed app, imported when the worker starts
app.autodiscover_tasks()
