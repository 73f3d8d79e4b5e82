"""A Django project (tests/django_project, laid out as Celery's Django guide) through a real worker.

The project configures celeriac from Django's settings under the ``CELERY_`` namespace,
autodiscovers the ``tasks.py`` of its installed apps and defines its tasks with
``@shared_task``; the tasks use the ORM on SQLite. Django runs in subprocesses only (the
migration and the client), never in the test process: Django's settings are global to a
process and the rest of the suite must not inherit them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.process.harness import ROOT, Worker

pytestmark = pytest.mark.process

PROJECT = ROOT / "tests" / "django_project"

#: run in a subprocess with the project's environment; prints its answer as JSON
DJANGO = """
import json, sys
import django
django.setup()
{code}
"""

MIGRATE = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
print(json.dumps(True))
"""

SEND_ON_COMMIT = """
from django.db import transaction
from notes.models import Note
from notes.tasks import note_text
from proj.celery import app

with transaction.atomic():
    note = Note.objects.create(text="written before the send")
    note_text.apply_async_on_commit((note.pk,), task_id="sent-on-commit")
    inside = app.broker.queue_length("celery").ready
print(json.dumps({"inside": inside, "after": app.broker.queue_length("celery").ready}))
"""

CLIENT = """
from notes.models import Note
from notes.tasks import connection_open, create_note
from proj.celery import app

pk = create_note.delay("hello from the client").get(timeout=30)
print(json.dumps({
    "on_commit": app.AsyncResult("sent-on-commit").get(timeout=30),
    "row": Note.objects.get(pk=pk).text,
    "connection_open": connection_open.delay().get(timeout=30),
}))
"""


class DjangoWorker(Worker):
    def command(self) -> list[str]:
        return [sys.executable, "-m", "celeriac", "worker", "-A", "proj", "-l", "info", *self.args]


@pytest.fixture
def django_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The project's environment: its database and broker in tmp_path, no CELERIAC_BROKER_URL
    (the broker must come from the CELERY_BROKER_URL of Django's settings)."""
    values = {key: value for key, value in env.items() if key not in ("CELERIAC_BROKER_URL", "CELERIAC_APP")}
    values.update(
        DJANGO_SETTINGS_MODULE="proj.settings",
        DJANGO_TEST_DB=str(tmp_path / "django.sqlite3"),
        DJANGO_TEST_BROKER_URL=f"sqlite:///{tmp_path / 'broker.db'}",
        PYTHONPATH=os.pathsep.join([str(PROJECT), env["PYTHONPATH"]]),
    )
    return values


@pytest.fixture
def django_worker(django_env: dict[str, str]) -> Iterator[DjangoWorker]:
    worker = DjangoWorker(django_env, ["-c", "1"])
    yield worker
    worker.cleanup()


def run_django(env: dict[str, str], code: str) -> Any:
    """Run ``code`` after ``django.setup()`` in a subprocess; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-c", DJANGO.format(code=code)],
        check=False,
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_django_project_runs_orm_tasks_on_a_celeriac_worker(django_env, django_worker):
    assert run_django(django_env, MIGRATE) is True
    # the transaction holds the send back until it commits (no worker runs yet)
    assert run_django(django_env, SEND_ON_COMMIT) == {"inside": 0, "after": 1}

    django_worker.start()
    # django.setup() came first, then the installed apps' tasks.py, all before the fork
    django_worker.wait_for(r"tasks: notes\.tasks\.connection_open, notes\.tasks\.create_note")
    django_worker.wait_ready(1)
    answer = run_django(django_env, CLIENT)

    assert answer["row"] == "hello from the client"
    assert answer["on_commit"] == "written before the send"
    # CONN_MAX_AGE 0: the connection the previous task opened was closed after it
    assert answer["connection_open"] is False
    log = django_worker.log()
    assert "Django's DEBUG is True" in log
    assert "Django's LOGGING disabled" in log
