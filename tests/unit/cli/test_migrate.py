"""``celeriac migrate``: on small Celery project trees written here, in a temporary directory.

The rewrite (a unified diff; files written only with --write; a second run changes
nothing), the findings (file:line, the feature, what to do) and the exit codes.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

import celeriac
from tests.unit.cli.running import run


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def findings(out: str) -> list[str]:
    """The finding lines of the output, without their advice number."""
    return [
        line.rsplit(" [", 1)[0] for line in out.splitlines() if ": blocks: " in line or ": note: " in line
    ]


#: A Celery project that moves over without anything blocking: the getting-started layout.
CLEAN_PROJECT = {
    "shop/__init__.py": """
        from .celery import app as celery_app

        __all__ = ("celery_app",)
        """,
    "shop/celery.py": """
        from celery import Celery
        from kombu import Exchange, Queue

        app = Celery("shop", broker="memory://", backend="memory://", include=["shop.tasks"])
        app.conf.task_queues = (Queue("orders", Exchange("orders"), routing_key="orders"),)
        app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)
        """,
    "shop/tasks.py": """
        import celery
        import celery.result
        from celery import shared_task, states
        from celery.exceptions import (
            SoftTimeLimitExceeded,  # the soft limit
            MaxRetriesExceededError,
        )
        from celery.result import AsyncResult
        from celery.utils.log import get_task_logger
        from kombu import Queue, Connection

        from .celery import app

        logger = get_task_logger(__name__)


        class Base(app.Task):
            max_retries = 5


        @app.task(bind=True, base=Base, acks_late=True)
        def charge(self, order_id):
            logger.info("charging %s", order_id)
            return states.SUCCESS


        @shared_task
        def total(x, y):
            return x + y


        def helpers():
            from kombu import Exchange, Queue, Connection

            return celery.shared_task, celery.result.AsyncResult, Exchange, Connection
        """,
    "Procfile": """
        web: gunicorn shop.wsgi
        worker: celery -A shop worker -l INFO -Q orders
        """,
    "deploy/shop-worker.service": """
        [Service]
        ExecStart=/srv/shop/venv/bin/celery --app=shop worker --concurrency=4
        ExecReload=/bin/kill -s HUP $MAINPID
        """,
    "docker-compose.yml": """
        services:
          celery:
            image: shop
            container_name: celery
            command: ["celery", "-A", "shop", "worker", "-l", "info"]
          check:
            command: python -m celery -A shop status
        """,
    "scripts/flush.sh": """
        #!/bin/sh
        set -e
        celery -A shop purge -f
        """,
    "Makefile": """
        worker:
        \t$(VENV)/bin/celery -A shop \\
        \t\tworker -c 2
        """,
    "README.md": "Run `celery -A shop worker` to start a worker.\n",
    "shop/celery_notes.txt": "celery -A shop worker\n",
}

EXPECTED_DIFF_LINES = [
    "-from celery import Celery",
    "+from celeriac import Celery",
    "-from kombu import Exchange, Queue",
    "+from celeriac import Exchange, Queue",
    "-import celery",
    "+import celeriac as celery",
    "-import celery.result",
    "+import celeriac.result, celeriac as celery",
    "-from celery import shared_task, states",
    "+from celeriac import shared_task, states",
    "-from celery.exceptions import (",
    "+from celeriac.exceptions import (",
    "-from celery.result import AsyncResult",
    "+from celeriac.result import AsyncResult",
    "-from celery.utils.log import get_task_logger",
    "+from celeriac.utils.log import get_task_logger",
    "-from kombu import Queue, Connection",
    "+from celeriac import Queue",
    "+from kombu import Connection",
    "-    from kombu import Exchange, Queue, Connection",
    "+    from celeriac import Exchange, Queue",
    "+    from kombu import Connection",
    "-worker: celery -A shop worker -l INFO -Q orders",
    "+worker: celeriac -A shop worker -l INFO -Q orders",
    "-ExecStart=/srv/shop/venv/bin/celery --app=shop worker --concurrency=4",
    "+ExecStart=/srv/shop/venv/bin/celeriac --app=shop worker --concurrency=4",
    '-    command: ["celery", "-A", "shop", "worker", "-l", "info"]',
    '+    command: ["celeriac", "-A", "shop", "worker", "-l", "info"]',
    "-    command: python -m celery -A shop status",
    "+    command: python -m celeriac -A shop status",
    "-celery -A shop purge -f",
    "+celeriac -A shop purge -f",
    "-\t$(VENV)/bin/celery -A shop \\",
    "+\t$(VENV)/bin/celeriac -A shop \\",
]
REWRITTEN = {
    "Makefile",
    "Procfile",
    "deploy/shop-worker.service",
    "docker-compose.yml",
    "scripts/flush.sh",
    "shop/celery.py",
    "shop/tasks.py",
}


@pytest.fixture
def clean_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write_tree(root, CLEAN_PROJECT)
    return root


def test_prints_the_rewrite_as_a_diff_and_writes_nothing(clean_project, capsys):
    before = snapshot(clean_project)
    code, out, err = run(["migrate", str(clean_project)], capsys)
    assert code == 0, out + err
    lines = out.splitlines()
    changed = {line[len("+++ b/") :] for line in lines if line.startswith("+++ b/")}
    assert changed == REWRITTEN
    changed_lines = [line for line in lines if line.startswith(("-", "+")) and line[:3] not in ("---", "+++")]
    assert sorted(changed_lines) == sorted(EXPECTED_DIFF_LINES)  # nothing else changes
    assert "7 file(s) to rewrite: run again with --write" in out
    assert "nothing blocks the move" in out
    assert snapshot(clean_project) == before


def test_write_changes_those_files_only_and_a_second_run_changes_nothing(clean_project, capsys, monkeypatch):
    before = snapshot(clean_project)
    code, out, _ = run(["migrate", "--write", str(clean_project)], capsys)
    assert code == 0
    assert "rewrote 7 file(s)" in out
    after = snapshot(clean_project)
    assert {name for name in after if after[name] != before[name]} == REWRITTEN
    assert set(after) == set(before)
    assert b"celeriac" not in after["README.md"] + after["shop/celery_notes.txt"]

    code, out, _ = run(["migrate", "--write", str(clean_project)], capsys)
    assert code == 0
    assert not [line for line in out.splitlines() if line.startswith(("---", "+++"))]
    assert "no import or command line to rewrite" in out
    assert snapshot(clean_project) == after

    # the rewritten project runs on celeriac
    monkeypatch.syspath_prepend(str(clean_project))
    for name in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        monkeypatch.delitem(sys.modules, name)
    try:
        tasks = importlib.import_module("shop.tasks")
        assert isinstance(tasks.app, celeriac.Celery)
        assert tasks.AsyncResult is celeriac.AsyncResult
        assert tasks.celery is celeriac
        assert tasks.charge.apply(("o-1",)).get() == "SUCCESS"
    finally:
        for name in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
            del sys.modules[name]


#: A Celery project using what celeriac lacks or treats differently.
BLOCKED_PROJECT = {
    "proj/__init__.py": "",
    "proj/celery.py": """
        import os

        from celery import Celery
        from celery.schedules import crontab

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

        app = Celery("proj", backend="rpc://", task_cls="proj.tasks:DbTask")
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.conf.beat_schedule = {"nightly": {"task": "proj.tasks.add", "schedule": crontab(hour=3)}}
        app.conf.update(task_serializer="pickle", worker_hijack_root_logger=False, task_acks_lat=True)
        app.conf["broker_use_ssl"] = {"ca_certs": "/ca.pem"}


        @app.on_after_configure.connect
        def schedule(sender, **kwargs):
            sender.add_periodic_task(60.0, add.s(1, 2))
        """,
    "proj/settings.py": """
        SECRET_KEY = "not secret"
        CELERY_BROKER_URL = "redis://localhost:6379/0"
        CELERY_TASK_ANNOTATIONS = {"proj.tasks.add": {"rate_limit": "10/s"}}
        CELERY_NOT_A_SETTING = 1
        CELERY_ALWAYS_EAGER = False
        BROKER_POOL_LIMIT = 4
        DEBUG = True
        """,
    "proj/tasks.py": """
        from celery import shared_task, xmap
        from celery.contrib.testing.worker import start_worker
        from celery.signals import task_prerun, task_received

        from .celery import app


        class DbTask(app.Task):
            rate_limit = "1/s"
            throws = (KeyError,)


        @app.task(bind=True, base=DbTask, rate_limit="5/m", trail=False)
        def add(self, x, y):
            return x + y


        def pipeline():
            xmap(add.s(), [(1, 2)]).apply_async(link=add.s())
            app.control.revoke("some-id")
        """,
    "celeryconfig.py": """
        import os

        redis_host = os.environ.get("REDIS_HOST", "localhost")
        result_backend = "redis://" + redis_host
        CELERY_ALWAYS_EAGER = True
        CELERYBEAT_SCHEDULE = {}
        _private = 1
        """,
    "Procfile": """
        worker: celery -A proj worker -l info -B -P gevent -E
        beat: celery -A proj beat
        flower: celery -A proj flower
        """,
    "deploy/celeryd.conf": """
        CELERY_BIN="/srv/venv/bin/celery"
        CELERY_RESULT_BACKEND=rpc://
        """,
    "deploy/celery.service": """
        [Service]
        ExecStart=/bin/sh -c '${CELERY_BIN} -A $CELERY_APP multi start $CELERYD_NODES'
        """,
    "ops/inspect.sh": """
        #!/bin/bash
        celery -A proj inspect active
        celery -A proj $COMMAND
        """,
    "requirements.txt": """
        django>=4.2
        celery[redis]==5.3.6
        celery-progress==0.4
        """,
    "broken.py": "print 'python 2'\n",
}

EXPECTED_FINDINGS = [
    "Procfile:1: blocks: beat: celery worker -B",
    "Procfile:1: blocks: worker: celery worker -P gevent",
    "Procfile:1: note: events: celery worker -E",
    "Procfile:2: blocks: beat: celery beat",
    "Procfile:3: blocks: events: celery flower",
    "broken.py:1: note: python: cannot parse this file",
    "celeryconfig.py:3: blocks: setting: unknown setting redis_host",
    "celeryconfig.py:5: note: setting: old setting name CELERY_ALWAYS_EAGER, read as task_always_eager",
    "celeryconfig.py:6: note: setting: old setting name CELERYBEAT_SCHEDULE, read as beat_schedule",
    "celeryconfig.py:6: blocks: beat: setting CELERYBEAT_SCHEDULE",
    "deploy/celery.service:2: blocks: multi: celery multi",
    "deploy/celeryd.conf:1: note: command: CELERY_BIN names the celery program",
    "deploy/celeryd.conf:2: blocks: rpc://: the rpc:// result backend",
    "ops/inspect.sh:2: blocks: remote control: celery inspect",
    "ops/inspect.sh:3: blocks: command: celery $COMMAND: which command is it?",
    "proj/celery.py:4: blocks: beat: celery.schedules.crontab is not in celeriac",
    "proj/celery.py:8: blocks: app: Celery(task_cls=...)",
    "proj/celery.py:8: blocks: rpc://: the rpc:// result backend",
    "proj/celery.py:10: blocks: beat: setting beat_schedule",
    "proj/celery.py:11: note: pickle: setting task_serializer names pickle",
    "proj/celery.py:11: note: setting: setting worker_hijack_root_logger is accepted and ignored",
    "proj/celery.py:11: blocks: setting: unknown setting task_acks_lat; did you mean 'task_acks_late'?",
    "proj/celery.py:12: blocks: setting: setting broker_use_ssl is refused",
    "proj/celery.py:15: blocks: signals: app.on_after_configure",
    "proj/celery.py:17: blocks: beat: add_periodic_task()",
    "proj/settings.py:3: blocks: rate limit: setting CELERY_TASK_ANNOTATIONS sets rate_limit",
    "proj/settings.py:4: blocks: setting: unknown setting CELERY_NOT_A_SETTING",
    "proj/settings.py:5: note: setting: old setting name CELERY_ALWAYS_EAGER, read as task_always_eager",
    "proj/settings.py:6: note: setting: old setting name BROKER_POOL_LIMIT, read as broker_pool_limit",
    "proj/tasks.py:1: blocks: canvas: celery.xmap is not in celeriac",
    "proj/tasks.py:19: blocks: canvas: celery.xmap is not in celeriac",
    "proj/tasks.py:2: blocks: import: celery.contrib.testing.worker has no celeriac counterpart",
    "proj/tasks.py:3: blocks: signals: celery.signals.task_received is never sent by celeriac",
    "proj/tasks.py:9: blocks: rate limit: DbTask.rate_limit",
    "proj/tasks.py:10: note: task: DbTask.throws",
    "proj/tasks.py:13: blocks: rate limit: @task(rate_limit=...)",
    "proj/tasks.py:13: blocks: task: @task option 'trail'",
    "proj/tasks.py:20: blocks: remote control: .revoke()",
    "proj/tasks.py:20: blocks: remote control: app.control",
    "requirements.txt:2: note: dependency: depends on celery",
]


def test_reports_each_difference_with_file_line_and_what_to_do(tmp_path, capsys):
    write_tree(tmp_path, BLOCKED_PROJECT)
    code, out, _ = run(["migrate", str(tmp_path)], capsys)
    assert code == 1
    reported = findings(out)
    for expected in EXPECTED_FINDINGS:
        assert any(line.startswith(expected) for line in reported), expected
    assert not [line for line in reported if line.startswith("requirements.txt:3")]  # celery-progress
    assert not [line for line in reported if line.startswith(("proj/settings.py:1:", "proj/settings.py:7:"))]
    assert not [line for line in reported if "CELERY_ALWAYS_EAGER" in line and "unknown" in line]
    assert not [line for line in reported if "task_prerun" in line]
    # each finding points at its advice, printed once
    advice = {line.split("] ", 1)[0] + "]": line for line in out.splitlines() if line.startswith("[")}
    beat = next(line for line in out.splitlines() if line.startswith("Procfile:2: blocks: beat"))
    assert "periodic tasks (beat) are not implemented" in advice[beat.rsplit(" ", 1)[1]]
    canvas = next(line for line in out.splitlines() if line.startswith("proj/tasks.py:1: blocks: canvas"))
    assert "xmap and xstarmap are not implemented" in advice[canvas.rsplit(" ", 1)[1]]
    assert len(advice) == len(set(advice.values()))
    assert "block the move" in out.splitlines()[-1]


def test_lines_it_cannot_move_are_left_alone(tmp_path, capsys):
    write_tree(tmp_path, BLOCKED_PROJECT)
    before = snapshot(tmp_path)
    code, out, _ = run(["migrate", "--write", str(tmp_path)], capsys)
    assert code == 1
    after = snapshot(tmp_path)
    procfile = after["Procfile"].decode()
    assert "worker: celeriac -A proj worker -l info -B -P gevent -E" in procfile  # the command exists
    assert "beat: celery -A proj beat" in procfile
    assert "flower: celery -A proj flower" in procfile
    assert after["ops/inspect.sh"] == before["ops/inspect.sh"]
    assert after["deploy/celery.service"] == before["deploy/celery.service"]
    assert after["deploy/celeryd.conf"] == before["deploy/celeryd.conf"]
    tasks = after["proj/tasks.py"].decode()
    assert "from celery import shared_task, xmap" in tasks  # xmap has no counterpart
    assert "from celeriac.signals import task_prerun, task_received" in tasks  # both exist
    assert "from celery.contrib.testing.worker import start_worker" in tasks
    assert "from celery.schedules import crontab" in after["proj/celery.py"].decode()
    assert "from celeriac import Celery" in after["proj/celery.py"].decode()
    # the findings stay until the code changes, with the same file:line
    code, again, _ = run(["migrate", str(tmp_path)], capsys)
    assert code == 1
    assert "no import or command line to rewrite" in again
    assert findings(again) == [line.replace("celery worker", "celeriac worker") for line in findings(out)]


def test_command_lines_that_are_not_celery_invocations_are_kept(tmp_path, capsys):
    compose = """
        services:
          celery:
            container_name: celery
            depends_on:
              - celery
              - redis
          worker:
            command:
              - celery
              - -A
              - proj
              - worker
        """
    write_tree(
        tmp_path,
        {
            "docker-compose.yml": compose,
            "run.sh": "#!/bin/sh\necho celery is great\npython proj/celery.py\ncelery_worker --x\n",
            "tool": "#!/usr/bin/env bash\ncelery -A proj worker\n",
            "notes.md": "celery -A proj worker\n",
        },
    )
    code, out, _ = run(["migrate", "--write", str(tmp_path)], capsys)
    assert code == 0, out
    text = (tmp_path / "docker-compose.yml").read_text()
    assert text.count("celery") == 3 and "- celeriac" in text  # only the YAML list's program changed
    assert (
        tmp_path / "run.sh"
    ).read_text() == "#!/bin/sh\necho celery is great\npython proj/celery.py\ncelery_worker --x\n"
    assert (tmp_path / "tool").read_text() == "#!/usr/bin/env bash\nceleriac -A proj worker\n"
    assert (tmp_path / "notes.md").read_text() == "celery -A proj worker\n"


def test_each_command_of_a_shell_line_is_judged_on_its_own(tmp_path, capsys):
    (tmp_path / "start.sh").write_text(
        "celery -A proj worker -c 1 && celery -A proj beat -S redbeat; celery -A proj purge -f\n"
    )
    code, out, _ = run(["migrate", "--write", str(tmp_path)], capsys)
    assert code == 1
    assert (tmp_path / "start.sh").read_text() == (
        "celeriac -A proj worker -c 1 && celery -A proj beat -S redbeat; celeriac -A proj purge -f\n"
    )
    assert findings(out) == ["start.sh:1: blocks: beat: celery beat"]


def test_settings_classes_and_less_common_imports(tmp_path, capsys):
    write_tree(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": """
                import celery
                import celery.contrib.abortable
                from celery import current_app
                from kombu.common import Broadcast

                from .conf import Settings


                class Config:
                    task_acks_late = True
                    worker_prefech_multiplier = 1


                app = celery.Celery("app")
                app.config_from_object(Config)
                app.config_from_object("app.conf:Settings")
                app.conf["result_backend"] = "rpc://"
                app.conf.result_serializer: str = "pickle"
                app.register_task(object())
                print(celery.VERSION)
                current_app.control.purge()
                """,
            "app/conf.py": """
                class Settings:
                    task_time_limt = 10
                """,
        },
    )
    code, out, _ = run(["migrate", str(tmp_path)], capsys)
    assert code == 1
    reported = findings(out)
    for expected in [
        "app/main.py:2: blocks: import: celery.contrib.abortable has no celeriac counterpart",
        "app/main.py:3: blocks: import: celery.current_app is not in celeriac",
        "app/main.py:4: blocks: queues: kombu.common.Broadcast",
        "app/main.py:11: blocks: setting: unknown setting worker_prefech_multiplier; "
        "did you mean 'worker_prefetch_multiplier'?",
        "app/main.py:17: blocks: rpc://: the rpc:// result backend",
        "app/main.py:18: note: pickle: setting result_serializer names pickle",
        "app/main.py:19: blocks: task: app.register_task",
        "app/main.py:20: blocks: import: celery.VERSION is not in celeriac",
        "app/main.py:21: blocks: remote control: app.control",
        "app/conf.py:2: blocks: setting: unknown setting task_time_limt; did you mean 'task_time_limit'?",
    ]:
        assert expected in reported, expected
    assert "celeriac has no current_app proxy" in out
    assert "celeriac does not register class-based tasks" in out


def test_python_rewrites_keep_everything_else_byte_for_byte(tmp_path, capsys):
    source = (
        '"""Module with non-ASCII text: é ü."""\r\n'
        'x = "ü"; from celery import Celery\r\n'
        "from . import celery\r\n"
        "from celery import (\r\n"
        "    shared_task,  # comment stays\r\n"
        ")\r\n"
        "import os, celery as c\r\n"
        "def f():\r\n"
        "    y = 1; from kombu import Queue, Connection\r\n"
    )
    (tmp_path / "mod.py").write_bytes(source.encode())
    code, out, _ = run(["migrate", "--write", str(tmp_path / "mod.py")], capsys)
    assert code == 0, out
    assert (tmp_path / "mod.py").read_bytes().decode() == (
        '"""Module with non-ASCII text: é ü."""\r\n'
        'x = "ü"; from celeriac import Celery\r\n'
        "from . import celery\r\n"
        "from celeriac import (\r\n"
        "    shared_task,  # comment stays\r\n"
        ")\r\n"
        "import os, celeriac as c\r\n"
        "def f():\r\n"
        "    y = 1; from celeriac import Queue; from kombu import Connection\r\n"
    )


def test_a_name_celeriac_lacks_keeps_its_import_line_and_is_reported(tmp_path, capsys):
    (tmp_path / "mod.py").write_text(
        "from celery import Celery, xmap\nfrom celery.states import precedence\n"
    )
    code, out, _ = run(["migrate", str(tmp_path)], capsys)
    assert code == 1
    assert "---" not in out
    reported = findings(out)
    assert "mod.py:1: blocks: canvas: celery.xmap is not in celeriac" in reported
    assert "mod.py:2: blocks: import: celery.states.precedence is not in celeriac" in reported
    assert "test membership of READY_STATES" in out


def test_exit_codes_and_usage(tmp_path, capsys):
    (tmp_path / "empty.py").write_text("x = 1\n")
    assert run(["migrate", str(tmp_path)], capsys)[0] == 0
    code, _, err = run(["migrate", str(tmp_path / "missing")], capsys)
    assert code == 2 and "no such file or directory" in err
    assert run(["migrate"], capsys)[0] == 2
    code, out, _ = run(["migrate", "--help"], capsys)
    assert code == 0
    assert "--write" in out and "0 nothing blocks the move, 1 something does, 2 bad usage" in out
