"""The command line, called in process: help, argument errors, inspect, purge, call, result."""

from __future__ import annotations

import importlib
import io
import re
import subprocess
import sys
import textwrap
import time
import uuid

import orjson
import pytest

from celeriac.cli import main as cli_main
from celeriac.cli.worker import cmd_worker
from celeriac.results.base import PendingResult
from celeriac.states import FAILURE, SUCCESS
from tests.unit.cli.running import run


@pytest.fixture
def app_module(tmp_path, monkeypatch):
    """Write a module that creates an app; return (module name, imported module)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    created: list[str] = []

    def write(broker: str = "memory://", backend: str = "memory://", extra: str = ""):
        name = f"celeriac_cli_app_{uuid.uuid4().hex[:8]}"
        source = f"""
            from celeriac import Celeriac, Queue
            app = Celeriac("cliapp", broker={broker!r}, backend={backend!r})
            {extra}

            @app.task(name="cliapp.add")
            def add(x, y):
                return x + y
            """
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        created.append(name)
        return name, importlib.import_module(name)

    yield write
    for name in created:
        module = sys.modules.pop(name, None)
        if module is not None:
            module.app.close()


def queue_row(out: str, queue: str) -> list[str]:
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == [queue]]
    assert len(rows) == 1, f"no row for queue {queue!r} in:\n{out}"
    return rows[0]


# -- help and usage errors --------------------------------------------------------------------


def test_help_exits_zero_and_lists_the_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("worker", "inspect", "purge", "deadletters", "call", "result"):
        assert command in out


def test_worker_help_exits_zero_and_documents_the_options(capsys):
    code, out, _ = run(["worker", "--help"], capsys)
    assert code == 0
    for option in (
        "--concurrency",
        "--prefetch-multiplier",
        "--max-tasks-per-child",
        "--max-memory-per-child",
    ):
        assert option in out
    assert "KIB" in out


def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"celeriac {__import__('celeriac').__version__}"


def test_no_command_is_a_usage_error(capsys):
    code, _, err = run([], capsys)
    assert code == 2
    assert "COMMAND" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["worker", "-A", "x", "-c", "0"], ["-c/--concurrency", "0 must be 1 or more"]),
        (["worker", "-A", "x", "-c", "two"], ["-c/--concurrency", "'two' is not a whole number"]),
        (["worker", "-A", "x", "--prefetch-multiplier", "-1"], ["--prefetch-multiplier", "-1", ">= 0"]),
        (["worker", "-A", "x", "--prefetch-multiplier", "lots"], ["--prefetch-multiplier", "'auto'"]),
        (["worker", "-A", "x", "--max-memory-per-child", "0"], ["--max-memory-per-child", "1 or more"]),
        (["worker", "-A", "x", "--max-memory-per-child-hard", "x"], ["--max-memory-per-child-hard", "whole"]),
        (["worker", "-A", "x", "-l", "loud"], ["-l/--loglevel", "loud"]),
        (["worker", "-A", "x", "-Q", ","], ["-Q/--queues", "at least one queue"]),
        (["call", "t", "-A", "x", "--args", '{"a": 1}'], ["--args", "must be a JSON list"]),
        (["call", "t", "-A", "x", "--kwargs", "[1]"], ["--kwargs", "must be a JSON object"]),
        (["monitor", "-A", "x", "--port", "0"], ["--port", "0 is not a port number", "1 to 65535"]),
        (["monitor", "-A", "x", "--port", "65536"], ["--port", "65536 is not a port number"]),
        (["monitor", "-A", "x", "--port", "http"], ["--port", "'http' is not a port number"]),
        (["monitor", "-A", "x", "--address", ""], ["--address", "host name or IP address"]),
        (["monitor", "-A", "x", "--address", "0.0.0.0:8000"], ["--address", "give the port with --port"]),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(capsys, argv, words):
    code, _, err = run(argv, capsys)
    assert code == 2
    for word in words:
        assert word in err


def test_worker_without_an_app_exits_2_saying_how_to_name_one(capsys):
    code, _, err = run(["worker"], capsys)
    assert code == 2
    assert "no app given" in err
    assert "-A" in err and "CELERIAC_APP" in err


def test_app_module_that_cannot_be_imported_exits_2(capsys):
    code, _, err = run(["inspect", "-A", "celeriac_cli_no_such_module"], capsys)
    assert code == 2
    assert "cannot import 'celeriac_cli_no_such_module'" in err


def test_app_attribute_that_is_not_an_app_exits_2(capsys, app_module):
    name, _ = app_module()
    code, _, err = run(["inspect", "-A", f"{name}:add"], capsys)
    assert code == 2
    assert "is not a Celeriac app" in err


def test_app_found_through_celeriac_app_variable(capsys, app_module, monkeypatch):
    name, module = app_module()
    module.add.delay(1, 2)
    monkeypatch.setenv("CELERIAC_APP", name)
    code, out, _ = run(["inspect"], capsys)
    assert code == 0
    assert queue_row(out, "celery")[1] == "1"


# -- inspect ----------------------------------------------------------------------------------


def test_inspect_prints_queue_lengths(capsys, app_module):
    name, module = app_module()
    for i in range(3):
        module.add.delay(i, i)
    module.add.apply_async((1, 1), countdown=600)
    module.add.apply_async((1, 1), queue="reports")
    code, out, _ = run(["inspect", "-A", name], capsys)
    assert code == 0
    assert "memory://" in out
    assert queue_row(out, "celery")[1:3] == ["3", "1"]
    assert queue_row(out, "reports")[1] == "1"
    assert "dead letters: 0" in out
    assert "workers: 0" in out


def test_inspect_json(capsys, app_module):
    name, module = app_module()
    module.add.delay(1, 2)
    module.app.send_task("cliapp.gone")
    module.app.broker.reject(module.app.broker.fetch(["celery"], 1, 0, "c"), requeue=False, reason="test")
    code, out, _ = run(["inspect", "-A", name, "--json"], capsys)
    assert code == 0
    payload = orjson.loads(out)
    [celery] = [q for q in payload["queues"] if q["queue"] == "celery"]
    assert (celery["ready"], celery["scheduled"]) == (1, 0)
    assert payload["dead_letters"] == 1
    assert payload["workers"] == []


def test_inspect_a_sqlite_app(capsys, app_module, tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    name, module = app_module(broker=url, backend=url)
    module.add.delay(1, 2)
    module.add.delay(3, 4)
    code, out, _ = run(["status", "-A", name], capsys)
    assert code == 0
    assert queue_row(out, "celery")[1] == "2"


def test_inspect_lists_declared_queues_even_when_empty(capsys, app_module):
    name, _ = app_module(extra='app.conf.task_queues = [Queue("celery"), Queue("idle")]')
    code, out, _ = run(["inspect", "-A", name], capsys)
    assert code == 0
    assert queue_row(out, "idle")[1:4] == ["0", "0", "0"]


# -- purge ------------------------------------------------------------------------------------


def test_purge_with_force_removes_waiting_messages(capsys, app_module):
    name, module = app_module()
    module.add.delay(1, 2)
    module.add.delay(3, 4)
    code, out, _ = run(["purge", "-A", name, "-f"], capsys)
    assert code == 0
    assert "celery: removed 2 message(s)" in out
    assert module.app.broker.queue_length("celery").total == 0


def test_purge_only_the_named_queues(capsys, app_module):
    name, module = app_module()
    module.add.delay(1, 2)
    module.add.apply_async((1, 2), queue="keep")
    code, _, _ = run(["purge", "-A", name, "-f", "-Q", "celery"], capsys)
    assert code == 0
    assert module.app.broker.queue_length("celery").total == 0
    assert module.app.broker.queue_length("keep").ready == 1


def test_purge_without_force_on_non_interactive_input_refuses(capsys, app_module):
    name, module = app_module()
    module.add.delay(1, 2)
    code, _, err = run(["purge", "-A", name], capsys)
    assert code == 2
    assert "-f/--force" in err
    assert module.app.broker.queue_length("celery").ready == 1


# -- call, result, deadletters ----------------------------------------------------------------


def test_call_sends_a_task_by_name_and_prints_its_id(capsys, app_module):
    name, module = app_module()
    code, out, _ = run(
        [
            "call",
            "cliapp.add",
            "-A",
            name,
            "--args",
            "[1, 2]",
            "--queue",
            "cli",
            "--delivery-mode",
            "transient",
        ],
        capsys,
    )
    assert code == 0
    [delivery] = module.app.broker.fetch(["cli"], 10, 0, "c")
    assert delivery.envelope.headers["id"] == out.strip()
    assert delivery.envelope.headers["task"] == "cliapp.add"
    assert delivery.persistent is False


def test_result_prints_state_and_value(capsys, app_module):
    name, module = app_module()
    module.app.backend.store(PendingResult("done-id", SUCCESS, 3))
    code, out, _ = run(["result", "done-id", "-A", name], capsys)
    assert code == 0
    assert out.splitlines()[0] == "SUCCESS: 3"


def test_result_of_a_failed_task_exits_1_with_the_traceback(capsys, app_module):
    name, module = app_module()
    module.app.backend.store(PendingResult("bad-id", FAILURE, ValueError("nope"), "Traceback: here"))
    code, out, _ = run(["result", "bad-id", "-A", name], capsys)
    assert code == 1
    assert out.startswith("FAILURE: ValueError('nope')")
    assert "Traceback: here" in out


def test_result_with_timeout_on_an_unfinished_task_exits_1(capsys, app_module):
    name, _ = app_module()
    code, _, err = run(["result", "pending-id", "-A", name, "--timeout", "0.01"], capsys)
    assert code == 1
    assert "pending-id" in err


def test_deadletters_list_and_purge(capsys, app_module):
    name, module = app_module()
    broker = module.app.broker
    result = module.app.send_task("cliapp.unknown")
    broker.reject(broker.fetch(["celery"], 1, 0, "c"), requeue=False, reason="unknown task 'cliapp.unknown'")
    code, out, _ = run(["deadletters", "list", "-A", name], capsys)
    assert code == 0
    assert f"task=cliapp.unknown[{result.id}]" in out
    assert "unknown task 'cliapp.unknown'" in out
    assert "1 dead letter(s)" in out

    code, out, _ = run(["deadletters", "purge", "-A", name, "-f"], capsys)
    assert code == 0
    assert broker.dead_letter_count() == 0


def test_deadletters_requeue_puts_them_back(capsys, app_module):
    name, module = app_module()
    broker = module.app.broker
    module.add.delay(1, 2)
    broker.reject(broker.fetch(["celery"], 1, 0, "c"), requeue=False, reason="test")
    code, out, _ = run(["deadletters", "requeue", "-A", name], capsys)
    assert code == 0
    assert "requeued 1 message(s)" in out
    assert broker.queue_length("celery").ready == 1


def test_build_parser_parses_worker_options():
    args = cli_main.build_parser().parse_args(
        ["worker", "-A", "proj", "-c", "3", "--prefetch-multiplier", "auto", "-Q", "a, b", "-l", "INFO"]
    )
    assert (args.app, args.concurrency, args.prefetch_multiplier, args.queues, args.loglevel) == (
        "proj",
        3,
        "auto",
        ["a", "b"],
        "info",
    )
    assert args.func is cmd_worker


# -- monitor --web: where it listens ----------------------------------------------------------


def test_monitor_help_shows_where_the_dashboard_listens(capsys):
    code, out, _ = run(["monitor", "--help"], capsys)
    assert code == 0
    for option in ("--bind HOST:PORT", "--address HOST", "--port PORT"):
        assert option in out


@pytest.fixture
def web_binds(monkeypatch) -> list[str]:
    """Where each `monitor --web` run asked the dashboard to listen (the monitor stops at once)."""
    from celeriac.observe import web
    from celeriac.observe.monitor import Monitor

    binds: list[str] = []

    class RecordingServer:
        url = "http://recorded/"

        def __init__(self, monitor, bind, token):
            binds.append(bind)

        def start(self):
            pass

        def stop(self):
            pass

    monkeypatch.setattr(web, "WebServer", RecordingServer)
    monkeypatch.setattr(Monitor, "run", lambda self, stop, on_sample=None: None)
    monkeypatch.setattr("celeriac.cli.monitor._stop_on_signals", lambda stop: None)
    return binds


@pytest.mark.parametrize(
    ("configured", "flags", "bind"),
    [
        (None, ["--port", "8000"], "127.0.0.1:8000"),
        (None, ["--address", "localhost"], "localhost:5555"),
        (None, ["--address", "::1", "--port", "8000"], "[::1]:8000"),
        (None, ["--address", "[::1]"], "[::1]:5555"),
        ("127.0.0.2:7000", ["--port", "8000"], "127.0.0.2:8000"),
        ("[::1]:7000", ["--address", "127.0.0.3"], "127.0.0.3:7000"),
        (None, ["--bind", "127.0.0.4:9000"], "127.0.0.4:9000"),
        ("127.0.0.2:7000", [], "127.0.0.2:7000"),
    ],
)
def test_monitor_port_and_address_replace_one_half_of_where_it_listens(
    capsys, app_module, web_binds, configured, flags, bind
):
    extra = "" if configured is None else f"app.conf.monitor_web_bind = {configured!r}"
    name, _ = app_module(extra=extra)
    code, _, err = run(["monitor", "-A", name, "--web", *flags], capsys)
    assert code == 0, err
    assert web_binds == [bind]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--port", "8000"], "--bind and --port"),
        (["--address", "0.0.0.0"], "--bind and --address"),
        (["--address", "0.0.0.0", "--port", "8000"], "--bind and --address and --port"),
    ],
)
def test_monitor_bind_with_port_or_address_is_an_error_saying_which_to_use(
    capsys, app_module, web_binds, flags, named
):
    name, _ = app_module()
    code, _, err = run(["monitor", "-A", name, "--web", "--bind", "127.0.0.1:9000", *flags], capsys)
    assert code == 2
    assert named in err
    assert "use --bind HOST:PORT alone, or --address HOST and --port PORT without --bind" in err
    assert web_binds == []


# -- inspect memory ---------------------------------------------------------------------------


def memory_heartbeat(node: str = "celeriac@a", state: str = "running") -> bytes:
    from celeriac.observe.records import ChildStats, MemoryReport, TaskMemory, Verdict, WorkerStats

    leak = TaskMemory(
        "cliapp.leak",
        40,
        0.01,
        0.02,
        40,
        1024.0,
        1100,
        40960,
        0,
        36,
        36864,
        36,
        2,
        0,
        Verdict.LEAK,
        "kept 36 MiB",
    )
    quiet = TaskMemory(
        "cliapp.add", 900, 0.001, 0.002, 120, 0.0, 4, 0, 0, 890, 0, 0, 0, 0, Verdict.FLAT, "0 KiB"
    )
    stats = WorkerStats(
        node=node,
        pid=4242,
        started_at=time.time() - 60,
        at=time.time(),
        queues=["celery"],
        concurrency=1,
        prefetch="4",
        master_rss_kib=30_000,
        children=[
            ChildStats(
                0, 5000, time.time() - 30, tasks=940, rss_kib=80_000, uss_kib=45_000, peak_rss_kib=90_000
            )
        ],
        exits={"max-memory": 2},
        state=state,
        memory=MemoryReport(
            9000, 15000, 3.0, False, 600.0, 3, 0.05, 0.07, 0.002, None, 40_000, None, [leak, quiet], []
        ),
    )
    return stats.to_json()


def test_inspect_memory_prints_processes_tasks_and_verdicts(capsys, app_module):
    name, module = app_module()
    module.app.broker.put_node_stats("celeriac@a", memory_heartbeat(), 60)
    module.app.broker.put_node_stats("celeriac@b", memory_heartbeat("celeriac@b", "stopped"), 60)
    code, out, _ = run(["inspect", "memory", "-A", name], capsys)
    assert code == 0
    assert "celeriac@a (pid 4242" in out
    assert "celeriac@b" not in out, "stopped nodes are not shown"
    assert re.search(r"child 0\s+5000\s+78.1 MiB\s+43.9 MiB\s+87.9 MiB\s+940", out), out
    assert re.search(r"cliapp.leak\s+40\s+10.0\s+20.0\s+\+1.0 MiB\s+\+1.1 MiB\s+0 KiB\s+2  LEAK", out), out
    assert "kept 36 MiB" in out
    assert "0 KiB" in out and "cliapp.add" in out
    assert "worker_max_memory_per_child=40000 KiB (own memory, USS, after a task)" in out
    assert "child exits: max-memory 2" in out
    assert "fork to ready 0.050 s median" in out


def test_inspect_memory_json(capsys, app_module):
    name, module = app_module()
    module.app.broker.put_node_stats("celeriac@a", memory_heartbeat(), 60)
    code, out, _ = run(["inspect", "memory", "-A", name, "--json"], capsys)
    assert code == 0
    (node,) = orjson.loads(out)
    assert node["memory"]["tasks"][0]["verdict"] == "leak"
    assert node["children"][0]["uss_kib"] == 45_000


def test_inspect_memory_without_a_live_worker_exits_1_saying_so(capsys, app_module):
    name, _ = app_module()
    code, out, _ = run(["inspect", "memory", "-A", name], capsys)
    assert code == 1
    assert "no live worker node" in out


def test_inspect_refuses_an_unknown_report(capsys, app_module):
    name, _ = app_module()
    code, _, err = run(["inspect", "threads", "-A", name], capsys)
    assert code == 2
    assert "'threads'" in err and "memory" in err


def test_commands_start_without_loading_the_monitor():
    # every command builds the whole parser, a worker's start among them: the monitor, its
    # HTTP client and the Prometheus library load only when `monitor` or `top` runs
    code = "import sys; from celeriac.cli import main; main.build_parser(); print(' '.join(sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(run.stdout.split())
    assert "celeriac.observe.munin" in loaded, "the parser was built"
    heavy = {
        "celeriac.observe.monitor",
        "celeriac.observe.history",
        "celeriac.observe.alerts",
        "celeriac.observe.web",
        "urllib.request",
        "prometheus_client",
    }
    assert sorted(loaded & heavy) == []


def test_cli_modules_import_downward_only():
    # common serves every command and imports none; a command module never imports main
    # (which imports them all); the package itself imports nothing; no cycle among them
    from tests.unit.test_layers import MODULES, imports_of

    cli = sorted(name for name in MODULES if name == "celeriac.cli" or name.startswith("celeriac.cli."))
    graph = {name: {i.target for i in imports_of(name)} & set(cli) for name in cli}
    # a command is a module or package right under celeriac.cli (migrate's parts are migrate's)
    top = {name for name in cli if name.count(".") == 2}
    commands = top - {"celeriac.cli", "celeriac.cli.common", "celeriac.cli.main"}
    assert {
        "celeriac.cli.worker",
        "celeriac.cli.inspect",
        "celeriac.cli.monitor",
        "celeriac.cli.munin",
    } <= commands
    assert graph["celeriac.cli"] == set()
    assert graph["celeriac.cli.common"] == set()
    assert [name for name in commands if "celeriac.cli.main" in graph[name]] == []
    assert graph["celeriac.cli.main"] >= commands
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for target in graph[name]:
                visit(target, (*path, name))
            done.add(name)

    for name in cli:
        visit(name, ())


def test_the_monitors_log_summary_names_the_growing_queues():
    from celeriac.cli.monitor import summary
    from celeriac.observe.monitor import MonitorState, QueueView

    def view(name: str, length: int, state: str) -> QueueView:
        return QueueView(name, length, 0, 0, 0, length, state=state)

    quiet = MonitorState(0.0, "memory://", 1.0, [view("a", 0, "ok")], [], [], {})
    assert "growing" not in summary(quiet)
    busy = MonitorState(0.0, "memory://", 1.0, [view("a", 0, "ok"), view("b", 90, "growing")], [], [], {})
    line = summary(busy)
    assert line.startswith("2 queues, 90 messages waiting")
    assert line.endswith("growing: b")
