"""Celery's command shape with real workers: ``-A`` before the command, ``-P solo``,
``--pidfile``, and ``app.start()`` from a script."""

from __future__ import annotations

import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.errors import TimeLimitExceeded, WorkerLostError
from tests.process.harness import Worker

pytestmark = pytest.mark.process

SOLO_SERVING = r"solo: serving in this process \(pid (\d+)\)"


class CommandWorker(Worker):
    """A worker started by a command line given whole (not ``celeriac worker -A proc_app``)."""

    def __init__(self, env: dict[str, str], command: list[str]) -> None:
        super().__init__(env, [])
        self._command = command

    def command(self) -> list[str]:
        return self._command


@pytest.fixture
def commands(env: dict[str, str]) -> Iterator:
    """Start ``commands(*argv)`` as a worker process; each is killed by pid at the end."""
    started: list[Worker] = []

    def start(*argv: str) -> Worker:
        worker = CommandWorker(env, list(argv)).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.cleanup()


def test_the_app_option_before_the_command_starts_a_worker(app, commands, runs):
    worker = commands(sys.executable, "-m", "celeriac", "-A", "proc_app", "worker", "-l", "INFO", "-c", "1")
    worker.wait_ready(1)
    assert app.send_task("run", ["first"]).get(timeout=20) == runs.pids("first")[0]
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0


def test_solo_runs_every_task_in_the_worker_process_itself(app, workers, runs):
    worker = workers("-P", "solo")
    worker.wait_for(SOLO_SERVING)
    assert "ready: solo pool" in worker.log()
    results = [app.send_task("run", [f"s{i}"]) for i in range(3)]
    assert [r.get(timeout=20) for r in results] == [worker.pid] * 3
    assert {pid for _, pid, _ in runs.entries()} == {worker.pid}
    assert worker.child_pids == set(), "no child process was started"
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert "stopped (warm shutdown)" in worker.log()


def test_solo_raises_the_soft_time_limit_in_the_task(app, workers, runs):
    worker = workers("-P", "solo")
    worker.wait_for(SOLO_SERVING)
    assert app.send_task("soft", ["limited"]).get(timeout=20) == "stopped at the soft limit"
    assert runs.pids("limited") == [worker.pid]


def test_solo_second_sigterm_interrupts_the_running_task_and_settles_it_as_lost(app, workers, runs):
    worker = workers("-P", "solo")
    worker.wait_for(SOLO_SERVING)
    result = app.send_task("block", ["cut"])
    runs.wait(1, "cut")
    worker.send(signal.SIGTERM)
    worker.wait_for("warm shutdown")
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 1, "a cold stop that cut a task short exits 1"
    assert "stopped (cold shutdown)" in worker.log()
    with pytest.raises(WorkerLostError, match="cold shutdown"):
        result.get(timeout=10)


def test_pidfile_is_written_refused_while_held_and_removed_at_exit(app, commands, workers, tmp_path):
    pattern = str(tmp_path / "%n.pid")
    pidfile = tmp_path / "holder.pid"  # %n: the node name before @
    holder = commands(
        sys.executable,
        *("-m", "celeriac", "-A", "proc_app", "worker", "-c", "1", "-l", "INFO"),
        *("-n", "holder@%h", "--pidfile", pattern),
    )
    holder.wait_ready(1)
    assert pidfile.read_text() == f"{holder.pid}\n"

    second = workers("-c", "1", "-n", "holder@%h", "--pidfile", pattern)
    assert second.wait_exit() == 1
    assert f"--pidfile {pidfile} is held by process {holder.pid}, which is running" in second.log()
    assert pidfile.read_text() == f"{holder.pid}\n", "the holder keeps its pid file"

    holder.send(signal.SIGTERM)
    assert holder.wait_exit() == 0
    assert not pidfile.exists()


def test_a_stale_pidfile_is_replaced(workers, tmp_path):
    pidfile = tmp_path / "w.pid"
    pidfile.write_text("999999999\n")  # above any pid: no such process
    worker = workers("-P", "solo", "--pidfile", str(pidfile))
    worker.wait_for(SOLO_SERVING)
    assert pidfile.read_text() == f"{worker.pid}\n"
    assert "removing the stale pid file" in worker.log()
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0
    assert not pidfile.exists()


def test_app_start_runs_the_command_line_from_a_script(app, commands, runs, tmp_path: Path):
    script = tmp_path / "tasks.py"
    script.write_text(
        textwrap.dedent(
            """
            from proc_app import app

            if __name__ == "__main__":
                app.start()
            """
        )
    )
    worker = commands(sys.executable, str(script), "worker", "-P", "solo", "-l", "INFO")
    worker.wait_for(SOLO_SERVING)
    assert app.send_task("run", ["scripted"]).get(timeout=20) == worker.pid
    worker.send(signal.SIGINT)
    assert worker.wait_exit() == 0


def test_solo_raises_the_hard_time_limit_in_the_task_it_cannot_kill(app, workers, runs):
    worker = workers("-P", "solo")
    worker.wait_for(SOLO_SERVING)
    result = app.send_task("run", ["stuck", 30.0], time_limit=0.5)
    with pytest.raises(TimeLimitExceeded, match="hard time limit"):
        result.get(timeout=20)
    assert "ran past its hard time limit of 0.5 s: raising TimeLimitExceeded" in worker.log()
    assert app.send_task("run", ["after"]).get(timeout=20) == worker.pid, "the node serves on"


def test_solo_renews_leases_while_a_long_task_runs_so_it_runs_once(app, workers, runs):
    lease = {"CELERIAC_TASK_ACKS_LATE": "true", "CELERIAC_BROKER_LEASE_TIMEOUT": "1"}
    first = workers("-P", "solo", "-n", "first@%h", **lease)
    first.wait_for(SOLO_SERVING)
    result = app.send_task("run", ["long", 3.0])
    runs.wait(1, "long")
    # a second node would take the message over if the first let its lease expire
    workers("-P", "solo", "-n", "second@%h", **lease).wait_for(SOLO_SERVING)
    assert result.get(timeout=20) == first.pid
    assert runs.pids("long") == [first.pid]
