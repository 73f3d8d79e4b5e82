from celery.result import AsyncResult

from .celery import app


def task_status(task_id):
    """What a progress-bar endpoint returns for a task."""
    result = AsyncResult(task_id, app=app)
    return {"state": result.state, "info": result.info}
