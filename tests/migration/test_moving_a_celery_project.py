"""A Celery project moved by its import lines and command lines, then run for real.

``celery_project/`` is a small project written for this suite in the shape Celery's
getting-started, tasks, calling and routing guides give one: ``proj/celery.py`` with the
app and ``config_from_object``, a ``celeryconfig`` module, ``@app.task`` and
``@shared_task``, ``bind=True`` and ``self.request``, ``self.retry``, ``autoretry_for``,
a ``Task`` subclass with ``on_failure``, ``update_state`` progress read by a view,
``get_task_logger``, ``Reject`` and ``Ignore``, ``task_routes`` with a dict and a router
function, signal receivers, and a Procfile worker line with the flags deploy scripts carry.

Each test moves a copy with ``celeriac migrate``, then starts the worker with the moved
Procfile line in the project directory, on SQLite and on Redis, and sends the tasks from
the project's own modules imported here, as its web process would. One worker per test
serves every check.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from celeriac.errors import DeadLetteredError
from tests.migration.moving import (
    TEMPLATE,
    Broker,
    ProcfileWorker,
    copy_project,
    migrate,
    procfile_line,
    project_files,
)
from tests.process.harness import wait_until

pytestmark = pytest.mark.process

#: The files ``celeriac migrate`` rewrites in the project: its Celery imports and its commands
MOVED_FILES = {
    "Procfile",
    "bin/worker.sh",
    "proj/base.py",
    "proj/celery.py",
    "proj/celeryconfig.py",
    "proj/tasks.py",
    "proj/views.py",
}

_IMPORT = re.compile(r"\s*(from \S+ import |import )")


# -- what migrate changed ---------------------------------------------------------------------


def changed_lines(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(file, old line, new line)`` for each line that differs (the files keep their lines)."""
    assert before.keys() == after.keys()
    changed = []
    for name, text in before.items():
        old_lines, new_lines = text.splitlines(), after[name].splitlines()
        assert len(old_lines) == len(new_lines), f"{name}: lines added or removed"
        changed += [(name, old, new) for old, new in zip(old_lines, new_lines, strict=True) if old != new]
    return changed


def assert_only_imports_and_commands_changed(changed: list[tuple[str, str, str]], diff: str) -> None:
    for name, old, new in changed:
        if _IMPORT.match(old):
            assert re.match(r"\s*(from celeriac[.\w]* import |import celeriac)", new), (name, old, new)
            assert re.match(r"\s*(from|import) (celery|kombu)\b", old), (name, old, new)
        else:  # a command line: its program word, and nothing else
            assert re.sub(r"\bcelery\b", "celeriac", old, count=1) == new, (name, old, new)
            assert re.search(r"\bcelery -A proj \w+", old), (name, old, new)
    printed = diff.splitlines()
    removed = [line[1:] for line in printed if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in printed if line.startswith("+") and not line.startswith("+++")]
    assert Counter(removed) == Counter(old for _, old, _ in changed)
    assert Counter(added) == Counter(new for _, _, new in changed)


# -- the moved project at work ----------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One line the project's signal receivers wrote."""

    signal: str
    task: str
    task_id: str
    state: str
    pid: int
    at: float


@dataclass
class MovedProject:
    """The moved project: its worker, its modules (imported here) and the files it writes."""

    path: Path
    worker: ProcfileWorker
    proj: ModuleType
    events_path: Path
    alerts_path: Path

    def events(self, signal: str, task_id: str = "-") -> list[Event]:
        if not self.events_path.exists():
            return []
        events = []
        for line in self.events_path.read_text().split("\n")[:-1]:  # complete lines only
            name, task, tid, state, pid, at = line.split()
            events.append(Event(name, task, tid, state, int(pid), float(at)))
        return [e for e in events if e.signal == signal and task_id in ("-", e.task_id)]

    def postrun_states(self, task_id: str, count: int) -> Counter[str]:
        """The states of the task's runs, once ``count`` runs have ended."""
        wait_until(
            lambda: len(self.events("task_postrun", task_id)) >= count, 20, f"{count} runs of {task_id}"
        )
        return Counter(event.state for event in self.events("task_postrun", task_id))


def _progress_is_read_before_the_outcome(run: MovedProject, go: Path) -> None:
    tasks, views = run.proj.tasks, run.proj.views
    report = tasks.build_report.delay(10, str(go))
    wait_until(lambda: views.task_status(report.id)["state"] == "PROGRESS", 20, "PROGRESS")
    assert views.task_status(report.id) == {"state": "PROGRESS", "info": {"current": 1, "total": 10}}
    assert not report.ready()
    go.touch()  # the task waits for this file: the test has seen its progress
    outcome = {"rows": 10, "routing_key": "reports"}  # routed by the dict in task_routes
    assert report.get(timeout=20) == outcome
    assert views.task_status(report.id) == {"state": "SUCCESS", "info": outcome}


def _calls_reach_their_queues(run: MovedProject) -> None:
    tasks = run.proj.tasks
    added = tasks.add.delay(2, 3)
    assert added.get(timeout=20) == 5
    # get_task_logger(__name__), in Celery's worker_task_log_format: the task's name and id
    run.worker.wait_for(rf"INFO/[^\]]+\] proj\.tasks\.add\[{added.id}\]: adding 2 \+ 3$")

    sent = time.time()
    later = tasks.mul.apply_async((6, 7), countdown=1)  # a @shared_task
    here = tasks.where_am_i.apply_async(args=(1, "two"), kwargs={"three": 3}, queue="reports")
    default = tasks.where_am_i.delay()
    sales = tasks.report_sales.delay("2024-05")  # routed by the router function
    assert here.get(timeout=20) == {
        "routing_key": "reports",
        "hostname": f"proj@{socket.gethostname()}",  # -n proj@%h
        "args": [1, "two"],
        "kwargs": {"three": 3},
    }
    assert default.get(timeout=20)["routing_key"] == "celery"
    assert sales.get(timeout=20) == {"month": "2024-05", "routing_key": "reports"}
    assert later.get(timeout=20) == 42
    (started,) = run.events("task_prerun", later.id)
    assert started.at - sent >= 0.9, "countdown=1 ran early"


def _retries_end_in_success(run: MovedProject) -> None:
    tasks = run.proj.tasks
    charge = tasks.charge.delay("o-17")  # self.retry(exc=..., countdown=...)
    stock = tasks.sync_stock.delay("sku-9")  # autoretry_for
    assert charge.get(timeout=20) == "charged o-17 after 2 retries"
    assert stock.get(timeout=20) == "sku-9 synced on attempt 2"
    assert run.postrun_states(charge.id, 3) == {"RETRY": 2, "SUCCESS": 1}
    assert run.postrun_states(stock.id, 2) == {"RETRY": 1, "SUCCESS": 1}


def _a_failure_reaches_the_base_class_handler(run: MovedProject) -> None:
    feed = run.proj.tasks.import_feed.delay("https://example.com/feed.xml")
    with pytest.raises(ValueError, match="feed https://example.com/feed.xml is not valid XML"):
        feed.get(timeout=20)
    wait_until(run.alerts_path.exists, 20, "on_failure's alert")
    name, task_id, exc_type, *message, pid = run.alerts_path.read_text().split()
    assert (name, task_id, exc_type) == ("proj.tasks.import_feed", feed.id, "ValueError")
    assert " ".join(message) == "feed https://example.com/feed.xml is not valid XML"
    assert int(pid.removeprefix("pid=")) in run.worker.child_pids


def _reject_and_ignore_settle_their_messages(run: MovedProject) -> tuple[str, int]:
    tasks = run.proj.tasks
    upload = tasks.parse_upload.delay("")
    ignored = tasks.notify_once.delay("welcome-mail")

    assert run.postrun_states(upload.id, 1) == {"REJECTED": 1}
    run.worker.wait_for(rf"{upload.id} on queue 'celery' dead-lettered: rejected by the task: empty upload")
    wait_until(lambda: upload.state == "FAILURE", 20, "the rejected task's FAILURE")
    assert isinstance(upload.result, DeadLetteredError)
    assert run.proj.celery_app.broker.dead_letter_count("celery") == 1

    assert run.postrun_states(ignored.id, 1) == {"IGNORED": 1}
    run.worker.wait_for(rf"Task proj.tasks.notify_once\[{ignored.id}\] ignored")
    (started,) = run.events("task_prerun", ignored.id)
    return ignored.id, started.pid


def _signals_ran_in_the_children(run: MovedProject) -> None:
    children = run.worker.child_pids
    assert len(children) == 2 and run.worker.pid not in children
    inits = run.events("worker_process_init")
    assert sorted(event.pid for event in inits) == sorted(children)
    prerun, postrun = run.events("task_prerun"), run.events("task_postrun")
    assert {event.pid for event in prerun + postrun} <= children
    assert Counter(event.task_id for event in prerun) == Counter(event.task_id for event in postrun)


def test_a_moved_celery_project_runs_as_it_did(
    broker: Broker, tmp_path, project_env, start_worker, import_project
):
    project = copy_project(tmp_path / "project")
    before = project_files(project)
    moved = migrate(project, "--write")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    changed = changed_lines(before, project_files(project))
    assert {name for name, _, _ in changed} == MOVED_FILES
    assert_only_imports_and_commands_changed(changed, moved.stdout)

    line = procfile_line(project)
    assert line.startswith("celeriac -A proj worker -l INFO -Q celery,reports -c 2 -n proj@%h ")
    env = {**project_env, **broker.environment()}
    worker = start_worker(env, line, project).wait_ready(2)
    worker.wait_for(rf"proj@\S+ ready: 2 children, queues celery, reports, .*broker {re.escape(broker.url)},")
    assert (project / "proj.pid").read_text().strip() == str(worker.pid)  # --pidfile=%n.pid
    run = MovedProject(
        project, worker, import_project(project, env), tmp_path / "events.log", tmp_path / "alerts.log"
    )

    _progress_is_read_before_the_outcome(run, tmp_path / "go")
    _calls_reach_their_queues(run)
    _retries_end_in_success(run)
    _a_failure_reaches_the_base_class_handler(run)
    ignored, pid = _reject_and_ignore_settle_their_messages(run)
    _signals_ran_in_the_children(run)

    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert not (project / "proj.pid").exists()
    assert not (project / "celeriac.db").exists()
    # Ignore stores nothing: the task stays STARTED (task_track_started), as with Celery
    ignored_result = run.proj.tasks.notify_once.AsyncResult(ignored)
    assert (ignored_result.state, ignored_result.info["pid"]) == ("STARTED", pid)


# -- old setting names ------------------------------------------------------------------------

OLD_NAMES = {
    "BROKER_URL": "broker_url",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_ROUTES": "task_routes",
    "CELERYD_CONCURRENCY": "worker_concurrency",
}


def test_old_setting_names_run_the_project_on_the_broker_they_name(
    sqlite_broker: Broker, tmp_path, project_env, start_worker, import_project
):
    project = copy_project(tmp_path / "project", "legacy_settings")
    moved = migrate(project, "--write")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    for old, new in OLD_NAMES.items():
        assert f"note: setting: old setting name {old}, read as {new}" in moved.stdout

    line = procfile_line(project)
    assert line == "celeriac -A proj worker --loglevel=info -Q celery,reports"  # no -c: CELERYD_CONCURRENCY
    env = {**project_env, **sqlite_broker.environment()}
    worker = start_worker(env, line, project).wait_ready(1)
    worker.wait_for(rf"ready: 1 children, queues celery, reports, .*broker {re.escape(sqlite_broker.url)},")
    for old, new in OLD_NAMES.items():
        worker.wait_for(rf"read {old} \(Celery's old name\) as {new}; rename it to {new}")

    proj = import_project(project, env)
    assert proj.celery_app.conf.broker_url == sqlite_broker.url
    sales = proj.tasks.report_sales.delay("june")
    assert sales.get(timeout=20) == {"month": "june", "routing_key": "reports"}  # CELERY_ROUTES
    assert not (project / "celeriac.db").exists()


# -- what blocks a move -----------------------------------------------------------------------


def test_migrate_finds_nothing_that_blocks_the_move_of_the_project(tmp_path):
    project = copy_project(tmp_path / "project")
    checked = migrate(project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "celeriac migrate: nothing blocks the move" in checked.stdout
    assert " blocks: " not in checked.stdout
    assert project_files(project) == project_files(TEMPLATE)  # without --write, nothing is written


def test_migrate_lets_the_canvas_move_and_lists_the_beat_that_blocks_it_and_exits_1(tmp_path):
    project = copy_project(tmp_path / "project", "canvas_and_beat")
    before = project_files(project)
    checked = migrate(project)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    found = set(re.findall(r"^(\S+):(\d+): blocks: ([\w ]+): (.+?) \[\d+\]$", checked.stdout, re.M))
    assert {(path, feature) for path, _, feature, _ in found} == {
        ("Procfile", "beat"),
        ("proj/nightly.py", "beat"),
    }
    for where in (
        ("Procfile", "2", "beat", "celery beat"),
        ("proj/nightly.py", "2", "beat", "celery.schedules.crontab is not in celeriac"),
        ("proj/nightly.py", "7", "beat", "setting beat_schedule"),
    ):
        assert where in found
    # signatures, chain, group and chord move as they are: only beat blocks
    assert not [f for f in found if f[2] == "canvas"], found
    assert "periodic tasks (beat) are not implemented in celeriac yet" in checked.stdout
    assert project_files(project) == before
