"""The Munin plugin: protocol output, field names, autoconf, install, and the celeriac_<graph> dispatch."""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from celeriac import Celeriac, Queue
from celeriac.errors import BrokerConnectionError
from celeriac.observe import munin
from tests.unit.cli.test_cli import run

ODD = "emails.high-priority"
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
THRESHOLDS = {
    "*": {"length": [10, 100], "oldest_age": 300},
    ODD: {"length": [2, 5]},
}


def values(out: str) -> dict[str, str]:
    """``{field: value}`` from fetch output."""
    pairs = [line.split(" ", 1) for line in out.splitlines() if ".value " in line]
    return {key.removesuffix(".value"): value for key, value in pairs}


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module creating a SQLite-broker app in tmp_path, importable by name; yields (name, app)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    name = f"munin_app_{uuid.uuid4().hex[:8]}"
    source = f"""
        from celeriac import Celeriac, Queue
        app = Celeriac(
            "muninapp",
            broker={f"sqlite:///{tmp_path / 'b.db'}"!r},
            backend="memory://",
            monitor_thresholds={THRESHOLDS!r},
            task_queues=[Queue("celery"), Queue({ODD!r}), Queue("reports")],
        )

        @app.task(name="muninapp.work")
        def work(n):
            return n
        """
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    module = importlib.import_module(name)
    yield name, module.app
    sys.modules.pop(name, None)
    module.app.close()


@pytest.fixture
def loaded(app_module):
    """The SQLite app with 3 messages on celery (one with an ETA) and 4 on emails.high-priority."""
    name, app = app_module
    work = sys.modules[name].work
    work.delay(1)
    work.delay(2)
    work.apply_async((3,), countdown=600)
    for n in range(4):
        work.apply_async((n,), queue=ODD)
    return name, app


def plugin_output(app: Celeriac, graph: str, action: str | None, capsys) -> tuple[int, str, str]:
    code = munin.plugin(lambda: app, graph, action)
    out, err = capsys.readouterr()
    return code, out, err


# -- config ------------------------------------------------------------------------------------


def test_config_describes_every_queue_with_thresholds(loaded, capsys):
    _, app = loaded
    fields = munin.field_names(["celery", ODD, "reports"])
    code, out, err = plugin_output(app, "length", "config", capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:5] == [
        "graph_title Celeriac queue length",
        "graph_vlabel messages",
        "graph_category celeriac",
        lines[3],
        "graph_args --base 1000 -l 0",
    ]
    assert lines[3].startswith("graph_info ")
    odd = fields[ODD]
    for queue in ("celery", ODD, "reports"):
        field = fields[queue]
        assert f"{field}.label {queue}" in lines
        assert f"{field}.min 0" in lines
        assert f"{field}.draw LINE2" in lines
        assert any(line.startswith(f"{field}.info ") for line in lines)
    # "*" for celery and reports, the queue's own entry for emails.high-priority
    assert "celery.warning 10" in lines and "celery.critical 100" in lines
    assert "reports.warning 10" in lines and "reports.critical 100" in lines
    assert f"{odd}.warning 2" in lines and f"{odd}.critical 5" in lines
    assert all(FIELD_RE.match(line.split(".", 1)[0]) for line in lines[5:])


def test_age_config_levels_come_from_oldest_age_and_omit_unset_critical(loaded, capsys):
    _, app = loaded
    code, out, _ = plugin_output(app, "age", "config", capsys)
    lines = out.splitlines()
    assert code == 0
    assert "graph_vlabel seconds" in lines
    assert "celery.warning 300" in lines
    assert not any(".critical" in line for line in lines)


def test_config_without_thresholds_has_no_levels(make_app, capsys):
    app = make_app()
    code, out, _ = plugin_output(app, "length", "config", capsys)
    assert code == 0
    assert "celery.label celery" in out
    assert ".warning" not in out and ".critical" not in out


def test_dirtyconfig_appends_the_values(loaded, capsys, monkeypatch):
    _, app = loaded
    monkeypatch.setenv("MUNIN_CAP_DIRTYCONFIG", "1")
    _, out, _ = plugin_output(app, "length", "config", capsys)
    assert out.splitlines()[0].startswith("graph_title")
    assert values(out)["celery"] == "3"


# -- fetch -------------------------------------------------------------------------------------


def test_fetch_values_equal_the_broker_lengths(loaded, capsys):
    _, app = loaded
    queues = ["celery", ODD, "reports"]
    fields = munin.field_names(queues)
    code, out, err = plugin_output(app, "length", None, capsys)
    assert (code, err) == (0, "")
    expected = {fields[q.queue]: str(q.total) for q in app.broker.queue_lengths(queues)}
    assert values(out) == expected
    assert expected == {"celery": "3", fields[ODD]: "4", "reports": "0"}
    assert plugin_output(app, "length", "fetch", capsys)[1] == out


def test_age_is_a_number_where_the_broker_tells(loaded, capsys):
    _, app = loaded
    fields = munin.field_names(["celery", ODD, "reports"])
    _, out, _ = plugin_output(app, "age", None, capsys)
    got = values(out)
    assert float(got["celery"]) >= 0 and float(got[fields[ODD]]) >= 0
    assert got["reports"] == "0"  # nothing ready: no waiting at all


def test_age_is_unknown_only_where_the_broker_cannot_tell(make_app, capsys):
    app = make_app(task_queues=[Queue("celery"), Queue("idle")])  # memory://: no age reported
    app.task(name="t")(lambda: None).delay()
    assert app.broker.queue_length("celery").oldest_age is None
    _, out, _ = plugin_output(app, "age", None, capsys)
    assert values(out) == {"celery": "U", "idle": "0"}
    _, out, _ = plugin_output(app, "length", None, capsys)
    assert values(out) == {"celery": "1", "idle": "0"}


def test_queues_include_settings_and_hide_internal_ones(make_app, monkeypatch):
    app = make_app(monitor_queues=["legacy"], task_default_queue="main", task_queues=[Queue("b"), Queue("a")])
    monkeypatch.setattr(app.broker, "queue_names", lambda: ["z", "celeriac.events", "a"])
    assert munin.watched_queues(app) == ["a", "b", "legacy", "main", "z"]


def test_broker_error_fails_fetch_and_config(make_app, capsys, monkeypatch):
    app = make_app()

    def down() -> list[str]:
        raise BrokerConnectionError("connection refused")

    monkeypatch.setattr(app.broker, "queue_names", down)
    for action in (None, "config"):
        code, out, err = plugin_output(app, "length", action, capsys)
        assert (code, out) == (1, "")
        assert "connection refused" in err


# -- field names ---------------------------------------------------------------------------------


def test_field_names_are_valid_short_and_stable():
    queues = [ODD, "celery", "1st", "a" * 30, "ok_name", "näive"]
    fields = munin.field_names(queues)
    assert fields["celery"] == "celery" and fields["ok_name"] == "ok_name"
    assert fields["1st"] == "_1st"
    assert fields["näive"] == "n_ive"
    for queue, field in fields.items():
        assert FIELD_RE.match(field), queue
        assert len(field) <= munin.FIELD_MAX, queue
    assert len(set(fields.values())) == len(queues)
    # shortened names carry a hash of the real name: the same every run, whatever else exists
    assert fields[ODD].startswith("emails_high") and fields[ODD] == munin.field_names([ODD])[ODD]
    assert fields["a" * 30] == munin.field_names(["a" * 30, "b"])["a" * 30]


def test_colliding_names_get_distinct_hashed_fields():
    fields = munin.field_names(["a.b", "a-b", "a_b", "x"])
    assert fields["a_b"] == "a_b"  # already a valid field: kept
    assert fields["a.b"] != fields["a-b"]
    assert {fields["a.b"], fields["a-b"]}.isdisjoint({"a_b", "x"})
    assert all(FIELD_RE.match(f) and f.startswith("a_b_") for f in (fields["a.b"], fields["a-b"]))
    assert munin.field_names(["a.b", "a-b"])["a.b"] == fields["a.b"]


def test_config_and_fetch_use_the_same_fields(loaded, capsys):
    _, app = loaded
    _, config, _ = plugin_output(app, "length", "config", capsys)
    _, fetch, _ = plugin_output(app, "length", None, capsys)
    labelled = {line.split(".", 1)[0] for line in config.splitlines() if ".label " in line}
    assert labelled == set(values(fetch))


# -- suggest, autoconf ------------------------------------------------------------------------------


def test_suggest_lists_the_graphs(loaded, capsys):
    name, _ = loaded
    assert run(["munin", "-A", name, "suggest"], capsys) == (0, "length\nage\n", "")


def test_autoconf_yes(loaded, capsys):
    name, _ = loaded
    assert run(["munin", "-A", name, "length", "autoconf"], capsys) == (0, "yes\n", "")


def test_autoconf_no_when_the_broker_is_down(make_app, capsys, monkeypatch, tmp_path):
    app = make_app(broker=f"sqlite:///{tmp_path / 'b.db'}")

    def down() -> list[str]:
        raise BrokerConnectionError("connection refused")

    monkeypatch.setattr(app.broker, "queue_names", down)
    assert plugin_output(app, "length", "autoconf", capsys) == (
        0,
        "no (cannot reach the broker: connection refused)\n",
        "",
    )


def test_autoconf_no_for_a_memory_broker_or_no_app(make_app, capsys, monkeypatch, tmp_path):
    code, out, _ = plugin_output(make_app(), "length", "autoconf", capsys)
    assert code == 0 and out.startswith("no (the memory:// broker")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["munin", "autoconf"], capsys)
    assert code == 0 and out.startswith("no (cannot load the app: no app given")


# -- command line ------------------------------------------------------------------------------------


def test_cli_defaults_to_length_and_fetch(loaded, capsys):
    name, _ = loaded
    code, out, _ = run(["munin", "-A", name], capsys)
    assert code == 0 and values(out)["celery"] == "3"
    code, out, _ = run(["munin", "-A", name, "config"], capsys)
    assert code == 0 and out.startswith("graph_title Celeriac queue length\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["munin", "queues"], "unknown graph 'queues': use one of length, age"),
        (["munin", "age", "draw"], "unknown action 'draw'"),
        (["munin", "config", "--force"], "--force: only for `celeriac munin install`"),
        (["munin", "length", "install"], "install takes no GRAPH"),
        (["munin", "install", "--graphs", "length,queues"], "give graphs out of length, age"),
    ],
)
def test_usage_errors_exit_2(loaded, capsys, argv, message):
    name, _ = loaded
    code, out, err = run([*argv, "-A", name], capsys)
    assert code == 2 and out == ""
    assert message in err


def test_help_explains_the_plugin_and_install(capsys):
    code, out, _ = run(["munin", "--help"], capsys)
    assert code == 0
    for text in ("install", "celeriac_<graph>", "CELERIAC_APP", "autoconf", "suggest", "monitor_thresholds"):
        assert text in out


# -- install ----------------------------------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """Plugins and conf dirs, and a fake celeriac executable found on PATH."""
    plugins, conf, bindir = tmp_path / "plugins", tmp_path / "conf", tmp_path / "bin"
    for d in (plugins, conf, bindir):
        d.mkdir()
    exe = bindir / "celeriac"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return plugins, conf, exe


def install_argv(name: str, plugins: Path, conf: Path, *extra: str) -> list[str]:
    return ["munin", "install", "-A", name, "--plugins-dir", str(plugins), "--conf-dir", str(conf), *extra]


def test_install_links_and_configures(loaded, dirs, capsys, tmp_path):
    name, _ = loaded
    plugins, conf, exe = dirs
    code, out, err = run(install_argv(name, plugins, conf), capsys)
    assert (code, err) == (0, "")
    for graph in ("length", "age"):
        link = plugins / f"celeriac_{graph}"
        assert link.is_symlink() and os.readlink(link) == str(exe)
        assert f"linked  {link} -> {exe}" in out
    text = (conf / "celeriac").read_text()
    assert "[celeriac_*]\n" in text
    assert f"env.CELERIAC_APP {name}\n" in text
    assert f"env.PYTHONPATH {tmp_path}\n" in text
    assert "\n#user " in text  # left to the admin
    assert f"munin-run --servicedir {plugins} --sconfdir {conf} celeriac_length" in out
    assert "systemctl restart munin-node" in out
    # again: nothing to change
    code, out, _ = run(install_argv(name, plugins, conf), capsys)
    assert code == 0 and "linked" not in out and out.count("kept") == 3


def test_install_some_graphs(loaded, dirs, capsys):
    name, _ = loaded
    plugins, conf, _ = dirs
    assert run(install_argv(name, plugins, conf, "--graphs", "age"), capsys)[0] == 0
    assert sorted(p.name for p in plugins.iterdir()) == ["celeriac_age"]


def test_install_refuses_to_replace_without_force(loaded, dirs, capsys):
    name, _ = loaded
    plugins, conf, exe = dirs
    (plugins / "celeriac_length").symlink_to("/bin/true")
    (plugins / "celeriac_age").write_text("#!/bin/sh\n")
    code, _, err = run(install_argv(name, plugins, conf), capsys)
    assert code == 2
    assert "refusing to replace" in err and "celeriac_length -> /bin/true" in err
    assert "celeriac_age (a file)" in err and "--force" in err
    assert os.readlink(plugins / "celeriac_length") == "/bin/true"  # untouched
    assert not (conf / "celeriac").exists()
    code, _, _ = run(install_argv(name, plugins, conf, "--force"), capsys)
    assert code == 0
    assert os.readlink(plugins / "celeriac_length") == str(exe)
    assert os.readlink(plugins / "celeriac_age") == str(exe)


def test_install_keeps_an_edited_conf_file_without_force(loaded, dirs, capsys):
    name, _ = loaded
    plugins, conf, _ = dirs
    (conf / "celeriac").write_text("[celeriac_*]\nuser celeriac\n")
    code, _, err = run(install_argv(name, plugins, conf), capsys)
    assert code == 2 and "celeriac (different settings)" in err
    assert not list(plugins.iterdir())


@pytest.mark.parametrize(
    ("trouble", "message"),
    [
        ("no app", "install needs the app"),
        ("no plugins dir", "is not a directory: install munin-node, or pass --plugins-dir"),
        ("no executable", "cannot find the celeriac executable"),
    ],
)
def test_install_errors(loaded, dirs, capsys, monkeypatch, trouble, message):
    name, _ = loaded
    plugins, conf, _ = dirs
    argv = install_argv(name, plugins, conf)
    if trouble == "no app":
        argv.remove("-A")
        argv.remove(name)
    elif trouble == "no plugins dir":
        plugins.rmdir()
    else:
        monkeypatch.setenv("PATH", "")
        monkeypatch.setattr(sys, "argv", [str(Path(__file__))])
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err


# -- run as celeriac_<graph> ---------------------------------------------------------------------------


def test_invoked_as_a_plugin_symlink(loaded, capsys, monkeypatch):
    name, _ = loaded
    monkeypatch.setenv("CELERIAC_APP", name)
    monkeypatch.setattr(sys, "argv", ["/etc/munin/plugins/celeriac_length", "config"])
    code, out, _ = run(None, capsys)
    assert code == 0 and out.startswith("graph_title Celeriac queue length\n")
    monkeypatch.setattr(sys, "argv", ["/etc/munin/plugins/celeriac_length"])
    code, out, _ = run(None, capsys)
    assert code == 0 and values(out)["celery"] == "3"
    monkeypatch.setattr(sys, "argv", ["/etc/munin/plugins/celeriac_age"])
    code, out, _ = run([], capsys)
    assert code == 0 and set(values(out)) == set(munin.field_names(["celery", ODD, "reports"]).values())
    monkeypatch.setattr(sys, "argv", ["/etc/munin/plugins/celeriac_age", "autoconf"])
    assert run(None, capsys)[:2] == (0, "yes\n")


def test_plugin_symlink_with_a_bad_graph_or_no_app(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/etc/munin/plugins/celeriac_queues"])
    code, out, err = run(None, capsys)
    assert code == 2 and out == "" and "use one of length, age" in err
    monkeypatch.setattr(sys, "argv", ["/etc/munin/plugins/celeriac_length"])
    code, _, err = run(None, capsys)
    assert code == 2 and "CELERIAC_APP" in err


def test_plugin_graph_reads_the_link_name():
    assert munin.plugin_graph("/etc/munin/plugins/celeriac_age") == "age"
    assert munin.plugin_graph("/usr/bin/celeriac") is None
    assert munin.plugin_graph("celeriac") is None
