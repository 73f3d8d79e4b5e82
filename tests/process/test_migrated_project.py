"""A Celery project moved by ``celeriac migrate --write`` runs on a real celeriac worker.

The project uses Celery's getting-started layout and import paths: ``proj/celery.py``
with the app, ``from celery.utils.log import get_task_logger``, an ``app.Task`` base
class passed as ``base=``, ``from celery.exceptions import ...`` and kombu's ``Queue``;
the worker is started with its Procfile's command line, as migrate rewrote it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from tests.process.harness import ROOT, Worker

pytestmark = pytest.mark.process

PROJECT = {
    "shop/__init__.py": """
        from .celery import app as celery_app

        __all__ = ("celery_app",)
        """,
    "shop/celery.py": """
        from celery import Celery
        from kombu import Queue

        app = Celery("shop", include=["shop.tasks"])
        app.conf.task_queues = (Queue("orders", routing_key="orders"),)
        app.conf.task_routes = {"shop.tasks.*": {"queue": "orders"}}
        """,
    "shop/tasks.py": """
        import os

        from celery.exceptions import SoftTimeLimitExceeded
        from celery.utils.log import get_task_logger

        from .celery import app

        logger = get_task_logger(__name__)


        class Audited(app.Task):
            def on_success(self, retval, task_id, args, kwargs):
                with open(os.environ["SHOP_AUDIT"], "a") as audit:
                    audit.write(f"{self.name} {retval}\\n")


        @app.task(bind=True, base=Audited)
        def charge(self, order_id):
            try:
                logger.info("charging %s in %s", order_id, self.request.id)
                return f"charged {order_id}"
            except SoftTimeLimitExceeded:
                return "too slow"
        """,
    "Procfile": "worker: celery -A shop worker -Q orders -c 1 -l INFO\n",
}


class ProcfileWorker(Worker):
    """A worker started with a Procfile line (``celeriac ...`` run as ``python -m celeriac ...``)."""

    def __init__(self, env: dict[str, str], line: str) -> None:
        super().__init__(env, [])
        self.line = line

    def command(self) -> list[str]:
        return [sys.executable, "-m", *shlex.split(self.line)]


def test_a_migrated_celery_project_runs_on_a_celeriac_worker(app, env, tmp_path):
    project = tmp_path / "project"
    for name, text in PROJECT.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    migrated = subprocess.run(
        [sys.executable, "-m", "celeriac", "migrate", "--write", str(project)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "from celeriac import Celery" in (project / "shop/celery.py").read_text()

    line = (project / "Procfile").read_text().split(":", 1)[1].strip()
    assert line == "celeriac -A shop worker -Q orders -c 1 -l INFO"

    audit = tmp_path / "audit.log"
    pythonpath = os.pathsep.join([str(project), env["PYTHONPATH"]])
    worker = ProcfileWorker({**env, "PYTHONPATH": pythonpath, "SHOP_AUDIT": str(audit)}, line)
    try:
        worker.start().wait_ready(1)
        result = app.send_task("shop.tasks.charge", ["o-1"], queue="orders")
        assert result.get(timeout=20) == "charged o-1"
        worker.wait_for(rf"charging o-1 in {result.id}")
        assert audit.read_text() == "shop.tasks.charge charged o-1\n"
    finally:
        worker.cleanup()
