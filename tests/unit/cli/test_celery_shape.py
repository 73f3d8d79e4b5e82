"""Celery's command shape: global options before the command, ``-A`` lookup, ``celery worker``'s
flags (done, noted, or refused with exit code 2), ``--pidfile``, and ``app.start()``."""

from __future__ import annotations

import importlib
import io
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeriac.app import Celeriac
from celeriac.cli import main as cli_main
from celeriac.cli.common import app_of, load_app
from celeriac.errors import CeleriacError, ConfigurationError
from celeriac.worker.master import Master
from celeriac.worker.options import WorkerOptions
from celeriac.worker.pidfile import Pidfile
from celeriac.worker.solo import SoloMaster
from tests.unit.cli.running import run


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """``write_module(source, package=False, files={})``: a fresh importable module (or package
    with more files); returns its name. Modules are forgotten and their apps closed afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    names: list[str] = []

    def write(source: str, package: bool = False, files: dict[str, str] | None = None) -> str:
        name = f"celeriac_shape_{uuid.uuid4().hex[:8]}"
        if package:
            (tmp_path / name).mkdir()
            (tmp_path / name / "__init__.py").write_text(textwrap.dedent(source))
            for filename, text in (files or {}).items():
                (tmp_path / name / filename).write_text(textwrap.dedent(text))
        else:
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for module_name in list(sys.modules):
        if any(module_name == n or module_name.startswith(f"{n}.") for n in names):
            module = sys.modules.pop(module_name)
            for value in vars(module).values():
                if isinstance(value, Celeriac):
                    value.close()


APP = """
    from celeriac import Celeriac, Queue
    app = Celeriac("shape", broker="memory://", backend="memory://")
    app.conf.task_queues = [Queue("celery"), Queue("other"), Queue("third")]

    @app.task(name="shape.add")
    def add(x, y):
        return x + y
"""


@pytest.fixture
def app_name(write_module) -> str:
    return write_module(APP)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Celeriac, WorkerOptions]]]:
    """Worker starts stop at the master's run: (master class, app, options) of each."""
    calls: list[tuple[str, Celeriac, WorkerOptions]] = []

    def fake_run(self: Master) -> int:
        calls.append((type(self).__name__, self.app, self.options))
        self.control.close()
        return 0

    monkeypatch.setattr(Master, "run", fake_run)
    monkeypatch.setattr(SoloMaster, "run", fake_run)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield calls
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()  # the worker's own (a --logfile's file)
    root.handlers[:] = handlers
    root.setLevel(level)


# -- global options, before or after the command ----------------------------------------------

COMMANDS = [
    ["worker"],
    ["purge"],
    ["inspect"],
    ["status"],
    ["monitor"],
    ["top"],
    ["deadletters"],
    ["call", "t"],
    ["result", "id"],
    ["munin"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_takes_the_global_options_before_it_and_after_it(command):
    parse = cli_main.build_parser().parse_args
    options = [
        "-A",
        "proj",
        "-b",
        "redis://b",
        "--result-backend",
        "redis://r",
        "--workdir",
        "/srv",
        "-q",
        "-C",
    ]
    before = parse([*options, *command])
    after = parse([*command, *options])
    for args in (before, after):
        assert (args.app, args.broker, args.result_backend, args.workdir) == (
            "proj",
            "redis://b",
            "redis://r",
            "/srv",
        )
        assert args.quiet and args.no_color
    assert parse(command).app is None


def test_an_option_after_the_command_wins_over_the_same_one_before_it():
    args = cli_main.build_parser().parse_args(["-A", "first", "worker", "-A", "second"])
    assert args.app == "second"


def test_global_app_option_loads_the_app_and_runs_the_command(capsys, app_name):
    code, out, err = run(["-A", app_name, "inspect", "--json"], capsys)
    assert code == 0, err
    assert '"dead_letters": 0' in out


def test_broker_and_result_backend_options_override_the_apps_settings(app_name):
    args = cli_main.build_parser().parse_args(
        ["-A", app_name, "-b", "memory://elsewhere", "--result-backend", "memory://results", "inspect"]
    )
    args.instance = None
    app = app_of(args)
    assert (app.conf.broker_url, app.conf.result_backend) == ("memory://elsewhere", "memory://results")


def test_config_option_loads_a_settings_module_over_the_apps(write_module, app_name):
    config = write_module(
        "task_default_queue = 'from_config'\nworker_prefetch_multiplier = 7\nbroker_url = 'memory://config'\n"
    )
    args = cli_main.build_parser().parse_args(["--config", config, "inspect", "-A", app_name])
    args.instance = None
    app = app_of(args)
    assert (app.conf.task_default_queue, app.conf.worker_prefetch_multiplier) == ("from_config", 7)
    assert app.conf.broker_url == "memory://config"  # over the broker the app's constructor was given


def test_workdir_changes_directory_before_the_app_is_loaded(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # restored afterwards
    project = tmp_path / "project"
    project.mkdir()
    name = f"celeriac_wd_{uuid.uuid4().hex[:8]}"
    (project / f"{name}.py").write_text(textwrap.dedent(APP))
    try:
        code, _, err = run(["--workdir", str(project), "-A", name, "inspect", "--json"], capsys)
        assert code == 0, err
        assert os.getcwd() == str(project)
    finally:
        module = sys.modules.pop(name, None)
        if module is not None:
            module.app.close()
        if str(project) in sys.path:
            sys.path.remove(str(project))


def test_workdir_that_does_not_exist_exits_2(capsys, tmp_path):
    code, _, err = run(["--workdir", str(tmp_path / "nope"), "-A", "x", "inspect"], capsys)
    assert code == 2
    assert "--workdir" in err and "No such file or directory" in err


def test_loader_option_is_refused_saying_what_to_use(capsys):
    code, _, err = run(["--loader", "myloader", "-A", "x", "inspect"], capsys)
    assert code == 2
    assert "--loader myloader: celeriac has no loaders" in err
    assert "--config MODULE" in err


def test_quiet_no_color_and_skip_checks_are_accepted(capsys, app_name):
    code, _, err = run(["-q", "--no-color", "--skip-checks", "-A", app_name, "inspect", "--json"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("level", ["-l INFO", "-l DEBUG", "--loglevel=WARNING", "-l Error", "-l FATAL"])
@pytest.mark.parametrize("command", ["worker", "monitor"])
def test_log_levels_are_taken_in_any_case(level, command):
    args = cli_main.build_parser().parse_args([command, *level.split()])
    assert args.loglevel == level.split("=")[-1].split()[-1].lower()


def test_celery_app_environment_variable_names_the_app(capsys, app_name, monkeypatch):
    monkeypatch.setenv("CELERY_APP", app_name)
    code, out, err = run(["inspect", "--json"], capsys)
    assert code == 0, err
    assert '"queues"' in out


# -- -A: Celery's lookup order -----------------------------------------------------------------


def test_a_module_attribute_named_celery_is_the_app(write_module):
    name = write_module("from celeriac import Celeriac\ncelery = Celeriac('c', broker='memory://')\n")
    assert load_app(name).main == "c"


def test_a_package_attribute_app_comes_before_its_celery_submodule(write_module):
    name = write_module(
        "from celeriac import Celeriac\napp = Celeriac('attr', broker='memory://')\n",
        package=True,
        files={"celery.py": "from celeriac import Celeriac\napp = Celeriac('sub', broker='memory://')\n"},
    )
    assert load_app(name).main == "attr"


def test_a_packages_celery_submodule_comes_before_any_other_app_in_the_package(write_module):
    # Celery's order: attribute app, attribute celery, submodule pkg.celery, then any app instance
    name = write_module(
        "from celeriac import Celeriac\nother = Celeriac('other', broker='memory://')\n",
        package=True,
        files={"celery.py": "from celeriac import Celeriac\napp = Celeriac('sub', broker='memory://')\n"},
    )
    assert load_app(name).main == "sub"


def test_any_one_app_in_the_module_is_found_last(write_module):
    name = write_module("from celeriac import Celeriac\nmy_app = Celeriac('only', broker='memory://')\n")
    assert load_app(name).main == "only"


def test_dotted_name_of_an_app_attribute_loads_it_as_celery_does(write_module):
    name = write_module(
        "from celeriac import Celeriac\nfirst = Celeriac('a', broker='memory://')\n"
        "second = Celeriac('b', broker='memory://')\n"
    )
    assert load_app(f"{name}.second").main == "b"
    assert load_app(f"{name}:first").main == "a"


def test_an_error_inside_the_celery_submodule_is_reported_not_skipped(write_module):
    name = write_module(
        "",
        package=True,
        files={"celery.py": "import celeriac_no_such_dependency\n"},
    )
    with pytest.raises(ConfigurationError, match=r"cannot import '.*\.celery'.*celeriac_no_such_dependency"):
        load_app(name)


def test_a_module_without_an_app_is_an_error_saying_so(write_module):
    name = write_module("x = 1\n")
    with pytest.raises(ConfigurationError, match="has no Celeriac app"):
        load_app(name)
    with pytest.raises(ConfigurationError, match=f"{name}.x is not a Celeriac app"):
        load_app(f"{name}.x")


# -- worker flags --------------------------------------------------------------------------------


def test_worker_help_lists_celerys_worker_flags(capsys):
    code, out, _ = run(["worker", "--help"], capsys)
    assert code == 0
    for flag in (
        "-B, --beat",
        "-O {default,fair}",
        "-P POOL, --pool POOL",
        "-E, --task-events, --events",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--pidfile",
        "-n HOSTNAME, --hostname HOSTNAME",
        "--max-tasks-per-child",
        "--max-memory-per-child KIB",
        "--time-limit SECONDS",
        "--soft-time-limit SECONDS",
        "-X EXCLUDE_QUEUES, --exclude-queues",
        "--autoscale",
        "-f LOGFILE, --logfile LOGFILE",
        "-I MODULES, --include MODULES",
        "--purge, --discard",
        "-D, --detach",
        "--disable-prefetch",
    ):
        assert flag in out, flag


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["-s", "celerybeat-schedule"], ["-s/--schedule", "periodic tasks"]),
        (["--scheduler", "x.Y"], ["--scheduler", "periodic tasks"]),
        (
            ["--autoscale", "10,3"],
            [
                "--autoscale 10,3: autoscaling is not implemented yet",
                "-c 10",
                "worker_concurrency",
                "pool_grow",
            ],
        ),
        (["-D"], ["-D/--detach", "systemd"]),
        (["--uid", "celery"], ["--uid", "User="]),
        (["--gid", "celery"], ["--gid", "Group="]),
        (
            ["--disable-prefetch", "--prefetch-multiplier", "4"],
            ["--disable-prefetch is --prefetch-multiplier 1"],
        ),
    ],
)
def test_refused_worker_flags_exit_2_before_loading_the_app(capsys, flags, words):
    # -A names a module that does not exist: the refusal comes first
    code, _, err = run(["worker", "-A", "celeriac_no_such_app", *flags], capsys)
    assert code == 2
    for word in words:
        assert word in err


@pytest.mark.parametrize(
    ("pool", "why"),
    [
        ("threads", "celeriac runs tasks in processes, not threads"),
        ("gevent", "celeriac has no green-thread pool"),
        ("eventlet", "celeriac has no green-thread pool"),
        ("custom", "celeriac has no pluggable pools"),
        ("fibers", "unknown pool"),
    ],
)
def test_pools_celeriac_lacks_exit_2_naming_what_to_use(capsys, pool, why):
    code, _, err = run(["worker", "-A", "x", "-P", pool], capsys)
    assert code == 2
    assert f"-P/--pool: '{pool}': {why}" in err
    assert "-P prefork with -c N" in err and "-P solo" in err


@pytest.mark.parametrize(
    ("pool", "chosen"), [("prefork", "prefork"), ("processes", "prefork"), ("SOLO", "solo")]
)
def test_prefork_and_solo_pools_are_taken(pool, chosen):
    assert cli_main.build_parser().parse_args(["worker", "-P", pool]).pool == chosen


def test_worker_flags_reach_the_node_options_and_settings(capsys, app_name, started, write_module):
    tasks = write_module("LOADED = True\n")
    argv = ["-A", app_name, "worker", "-c", "3", "--max-tasks-per-child", "50"]
    argv += ["--max-memory-per-child", "200000", "--time-limit", "30", "--soft-time-limit", "20"]
    argv += ["-X", "other", "-I", tasks, "-n", "w1@%h", "-l", "INFO", "--disable-prefetch"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    ((master, app, options),) = started
    assert master == "Master"
    assert options.queue_names == ["celery", "third"]
    assert (options.concurrency, options.max_tasks_per_child, options.max_memory_per_child) == (3, 50, 200000)
    assert options.prefetch_multiplier == 1
    assert options.nodename.startswith("w1@") and "%" not in options.nodename
    assert (app.conf.task_time_limit, app.conf.task_soft_time_limit) == (30.0, 20.0)
    assert tasks in app.conf.include and tasks in sys.modules


def test_a_bare_hostname_is_the_host_part_of_the_node_name(capsys, app_name, started):
    code, _, err = run(["worker", "-A", app_name, "-n", "worker1"], capsys)
    assert code == 0, err
    assert started[0][2].nodename == "celeriac@worker1"


def test_solo_pool_starts_the_solo_master_and_names_the_settings_it_does_not_use(capsys, app_name, started):
    code, _, err = run(
        ["worker", "-A", app_name, "-P", "solo", "-c", "4", "--max-tasks-per-child", "9"], capsys
    )
    assert code == 0, err
    ((master, _, options),) = started
    assert (master, options.pool, options.concurrency) == ("SoloMaster", "solo", 1)
    assert "-P solo runs one task at a time in this process" in err
    assert "worker_concurrency, worker_max_tasks_per_child do not apply" in err


def test_solo_pool_says_nothing_when_no_child_setting_is_set(capsys, app_name, started):
    code, _, err = run(["worker", "-A", app_name, "-P", "solo"], capsys)
    assert code == 0, err
    assert "do not apply" not in err


@pytest.mark.parametrize(
    ("flags", "level", "words"),
    [
        (["-O", "fair"], "INFO", ["-O fair: each child fetches its own messages", "--prefetch-multiplier 1"]),
        (["--without-gossip"], "INFO", ["--without-gossip: accepted", "do not gossip"]),
        (["--without-mingle"], "INFO", ["--without-mingle: accepted"]),
        (["--without-heartbeat"], "INFO", ["--without-heartbeat: accepted", "node statistics"]),
        (["--heartbeat-interval", "10"], "INFO", ["--heartbeat-interval: accepted"]),
        (["-E"], "WARNING", ["-E/--task-events: task events are not implemented yet", "Flower"]),
        (["--statedb", "/var/run/w.state"], "WARNING", ["-S/--statedb /var/run/w.state: not used"]),
    ],
)
def test_accepted_flags_say_what_celeriac_does_instead(capsys, app_name, started, flags, level, words):
    code, _, err = run(["worker", "-A", app_name, "-l", "INFO", *flags], capsys)
    assert code == 0, err
    lines = [line for line in err.splitlines() if words[0] in line]
    assert len(lines) == 1, err
    assert f"{level}/" in lines[0]
    for word in words[1:]:
        assert word in lines[0]


def test_optimization_default_says_nothing(capsys, app_name, started):
    code, _, err = run(["worker", "-A", app_name, "-l", "INFO", "-O", "default"], capsys)
    assert code == 0, err
    assert "-O" not in err


def test_purge_empties_the_consumed_queues_before_the_worker_starts(capsys, app_name, started):
    module = importlib.import_module(app_name)
    module.add.apply_async((1, 2), queue="celery")
    module.add.apply_async((1, 2), queue="other")
    code, _, err = run(["worker", "-A", app_name, "-Q", "celery", "--purge"], capsys)
    assert code == 0, err
    broker = module.app.broker
    assert (broker.queue_length("celery").ready, broker.queue_length("other").ready) == (0, 1)
    assert "--purge: removed 1 waiting message(s) from celery" in err


def test_logfile_name_takes_the_node_name(capsys, app_name, started, tmp_path):
    code, _, err = run(
        ["worker", "-A", app_name, "-n", "w7@%h", "-f", str(tmp_path / "%n.log"), "-E"], capsys
    )
    assert code == 0, err
    assert "task events are not implemented" in (tmp_path / "w7.log").read_text()


# -- --pidfile ------------------------------------------------------------------------------------


def test_pidfile_is_written_while_the_worker_runs_and_removed_after(capsys, app_name, monkeypatch, tmp_path):
    seen: list[str] = []

    def fake_run(self: Master) -> int:
        seen.append((tmp_path / "n1.pid").read_text())
        self.control.close()
        return 0

    monkeypatch.setattr(Master, "run", fake_run)
    code, _, err = run(
        ["worker", "-A", app_name, "-n", "n1@%h", "--pidfile", str(tmp_path / "%n.pid")], capsys
    )
    assert code == 0, err
    assert seen == [f"{os.getpid()}\n"]
    assert not (tmp_path / "n1.pid").exists()


def test_a_held_pidfile_stops_the_worker_before_purge_deletes_anything(capsys, app_name, started, tmp_path):
    module = importlib.import_module(app_name)
    module.add.delay(1, 2)
    held = tmp_path / "w.pid"
    held.write_text(f"{os.getppid()}\n")  # a running process that is not this one
    code, _, err = run(["worker", "-A", app_name, "--purge", "--pidfile", str(held)], capsys)
    assert code == 1
    assert f"--pidfile {held} is held by process {os.getppid()}, which is running" in err
    assert started == []
    assert module.app.broker.queue_length("celery").ready == 1
    assert held.read_text() == f"{os.getppid()}\n"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    "content",
    ["", "garbage\n", f"{os.getpid()}\n", "DEAD"],
    ids=["empty", "not-a-pid", "own-pid", "dead-process"],
)
def test_a_stale_pidfile_is_replaced(tmp_path, content):
    path = tmp_path / "w.pid"
    path.write_text(f"{_dead_pid()}\n" if content == "DEAD" else content)
    with Pidfile(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_a_pidfile_taken_over_by_another_process_is_left_to_it(tmp_path):
    path = tmp_path / "w.pid"
    pidfile = Pidfile(str(path))
    pidfile.acquire()
    path.write_text("12345\n")
    pidfile.release()
    assert path.read_text() == "12345\n"


def test_a_pidfile_in_a_directory_that_does_not_exist_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="--pidfile .*: cannot create it"):
        Pidfile(str(tmp_path / "missing" / "w.pid")).acquire()


def test_a_running_holder_is_an_error_naming_its_pid(tmp_path):
    path = tmp_path / "w.pid"
    path.write_text(f"{os.getppid()}\n")
    with pytest.raises(CeleriacError, match=f"held by process {os.getppid()}, which is running"):
        Pidfile(str(path)).acquire()


# -- app.start() and app.worker_main() ------------------------------------------------------------


@pytest.fixture
def script_app(make_app) -> Celeriac:
    app = make_app("script")

    @app.task(name="script.ping")
    def ping() -> str:
        return "pong"

    return app


def test_app_start_runs_a_command_with_this_app(capsys, script_app):
    script_app.send_task("script.ping")
    assert script_app.start(["inspect", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"ready": 1' in out


def test_app_start_reads_the_command_line_without_the_script_name(capsys, script_app, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["tasks.py", "inspect", "--json"])
    assert script_app.start() == 0
    assert '"queues"' in capsys.readouterr().out
    assert script_app.start(sys.argv) == 0  # app.start(sys.argv): the script name is dropped too


def test_worker_main_starts_a_worker_with_this_app(script_app, started):
    assert script_app.worker_main(["worker", "-l", "INFO", "-P", "solo"]) == 0
    assert script_app.worker_main(["-c", "2"]) == 0  # `worker` may be left out
    assert [(master, app) for master, app, _ in started] == [
        ("SoloMaster", script_app),
        ("Master", script_app),
    ]
    assert started[1][2].concurrency == 2


def test_an_app_option_still_wins_over_the_app_that_called_start(capsys, script_app, app_name):
    assert script_app.start(["-A", app_name, "inspect", "--json"]) == 0
    assert '"celery"' in capsys.readouterr().out and app_name in sys.modules


def test_start_returns_the_exit_code_of_a_failed_command(capsys, script_app):
    assert script_app.start(["worker", "--autoscale", "4"]) == 2
    assert "--autoscale 4" in capsys.readouterr().err


def test_app_start_help_exits_like_the_command(script_app):
    with pytest.raises(SystemExit) as info:
        script_app.start(["--help"])
    assert info.value.code == 0


def test_munin_install_refuses_global_options_it_could_not_write_into_the_plugin(capsys, app_name, tmp_path):
    munin = tmp_path / "munin"
    munin.mkdir()
    argv = ["-b", "memory://x", "munin", "install", "-A", app_name, "--plugins-dir", str(munin)]
    code, _, err = run([*argv, "--conf-dir", str(munin)], capsys)
    assert code == 2
    assert "-b: munin install writes only the app (-A)" in err
    assert list(munin.iterdir()) == []
