import os
import time

from celery import shared_task
from celery.exceptions import Ignore, Reject
from celery.signals import task_postrun, task_prerun, worker_process_init
from celery.utils.log import get_task_logger

from .base import NotifyingTask
from .celery import app

logger = get_task_logger(__name__)


@app.task
def add(x, y):
    logger.info("adding %s + %s", x, y)
    return x + y


@shared_task
def mul(x, y):
    return x * y


@app.task(bind=True)
def where_am_i(self, *args, **kwargs):
    return {
        "routing_key": self.request.delivery_info["routing_key"],
        "hostname": self.request.hostname,
        "args": list(args),
        "kwargs": kwargs,
    }


@app.task(bind=True)
def report_sales(self, month):
    return {"month": month, "routing_key": self.request.delivery_info["routing_key"]}


@app.task(bind=True, max_retries=3)
def charge(self, order_id):
    try:
        if self.request.retries < 2:
            raise ConnectionError("payment gateway unreachable")
    except ConnectionError as exc:
        # Celery's documented retry idiom, kept as users write it
        raise self.retry(exc=exc, countdown=0.1)  # noqa: B904
    return f"charged {order_id} after {self.request.retries} retries"


@app.task(bind=True, autoretry_for=(OSError,), retry_kwargs={"max_retries": 3, "countdown": 0.1})
def sync_stock(self, sku):
    if self.request.retries == 0:
        raise OSError("warehouse API timed out")
    return f"{sku} synced on attempt {self.request.retries + 1}"


@app.task(base=NotifyingTask)
def import_feed(url):
    raise ValueError(f"feed {url} is not valid XML")


@app.task(bind=True)
def build_report(self, rows, go_file):
    self.update_state(state="PROGRESS", meta={"current": 1, "total": rows})
    logger.info("report %s waits for %s", self.request.id, go_file)
    deadline = time.monotonic() + 30
    while not os.path.exists(go_file) and time.monotonic() < deadline:
        time.sleep(0.01)
    self.update_state(state="PROGRESS", meta={"current": rows, "total": rows})
    return {"rows": rows, "routing_key": self.request.delivery_info["routing_key"]}


@app.task(bind=True, acks_late=True)
def parse_upload(self, data):
    if not data:
        raise Reject("empty upload", requeue=False)
    return len(data)


@app.task(bind=True)
def notify_once(self, key):
    raise Ignore()


def _event(signal, task_name="-", task_id="-", state="-"):
    """One line per signal: what, in which process, when."""
    with open(os.environ["PROJ_EVENTS"], "a") as events:
        events.write(f"{signal} {task_name} {task_id} {state} {os.getpid()} {time.time():.3f}\n")


@worker_process_init.connect
def open_connections(**kwargs):
    _event("worker_process_init")


@task_prerun.connect
def before_task(sender=None, task_id=None, task=None, **kwargs):
    _event("task_prerun", task.name, task_id)


@task_postrun.connect
def after_task(sender=None, task_id=None, task=None, state=None, **kwargs):
    _event("task_postrun", task.name, task_id, state)
