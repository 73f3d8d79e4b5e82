# Written for Celery 3: the upper-case names Celery 5 still reads.
import os

BROKER_URL = os.environ.get("PROJ_BROKER_URL", "redis://localhost:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("PROJ_RESULT_BACKEND", "redis://localhost:6379/0")
CELERY_ROUTES = {"proj.tasks.report_sales": {"queue": "reports"}}
CELERYD_CONCURRENCY = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
