import os

from kombu import Exchange, Queue

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
enable_utc = True
result_expires = 3600
task_track_started = True
worker_prefetch_multiplier = 1
broker_transport_options = {"global_keyprefix": os.environ.get("PROJ_KEYPREFIX", "")}

task_default_queue = "celery"
task_queues = (
    Queue("celery", routing_key="celery"),
    Queue("reports", Exchange("reports"), routing_key="reports"),
)


def route_task(name, args, kwargs, options, task=None, **kw):
    """Every report_* task goes to the reports queue."""
    if name.startswith("proj.tasks.report_"):
        return {"queue": "reports"}
    return None


task_routes = (
    {"proj.tasks.build_report": {"queue": "reports"}},
    route_task,
)
