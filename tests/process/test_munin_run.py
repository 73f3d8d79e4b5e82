"""The real munin-run runs the plugins `celeriac munin install` set up, and reads the real queue lengths."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from celeriac import Celeriac
from celeriac.observe.munin import field_names

pytestmark = pytest.mark.process

ODD = "emails.high-priority"


def unavailable(reason: str) -> None:
    """Skip, or fail under CI where munin-node must be installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"munin-run is required under CI=true (apt-get install munin-node): {reason}")
    pytest.skip(reason)


def munin_run_path() -> str:
    found = shutil.which("munin-run") or next(
        (p for p in ("/usr/sbin/munin-run", "/usr/bin/munin-run") if os.access(p, os.X_OK)), None
    )
    if found is None:
        unavailable("munin-run not found: install the munin-node package")
    return str(found)


def celeriac_script() -> Path:
    """The installed ``celeriac`` script next to this interpreter (what the plugin links point to)."""
    script = Path(sys.executable).parent / "celeriac"
    if not os.access(script, os.X_OK):
        pytest.fail(f"{script} is missing: install celeriac in this environment (pip install -e .)")
    return script


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run ``cmd`` in its own session; kill that session if it outlives ``timeout``."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"{cmd} did not finish within {timeout} s") from None
    return proc.returncode, out, err


@pytest.fixture
def producer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module defining a SQLite-broker app (for the plugin), and this process's copy of the app."""
    source = f"""
        from celeriac import Celeriac
        app = Celeriac(
            "muninrun",
            broker={f"sqlite:///{tmp_path / 'broker.db'}"!r},
            backend="memory://",
            monitor_thresholds={{"*": {{"length": [50, 500]}}}},
        )

        @app.task(name="muninrun.work")
        def work(n):
            return n
        """
    (tmp_path / "muninrun_app.py").write_text(textwrap.dedent(source))
    app = Celeriac("producer", broker=f"sqlite:///{tmp_path / 'broker.db'}", backend="memory://")
    yield app
    app.close()


def test_munin_run_reads_the_installed_plugins(producer: Celeriac, tmp_path: Path):
    munin_run = munin_run_path()
    script = celeriac_script()
    for n in range(3):
        producer.send_task("muninrun.work", (n,))
    for n in range(5):
        producer.send_task("muninrun.work", (n,), queue=ODD)
    producer.send_task("muninrun.work", (9,), queue=ODD, countdown=600)

    plugins, conf = tmp_path / "plugins", tmp_path / "plugin-conf.d"
    plugins.mkdir()
    conf.mkdir()
    # neither the app nor its directory reaches the plugin except through the conf file
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_") and k != "PYTHONPATH"}
    env["PATH"] = f"{script.parent}{os.pathsep}{env.get('PATH', '')}"
    code, out, err = run(
        [
            str(script),
            "munin",
            "install",
            "-A",
            "muninrun_app",
            "--plugins-dir",
            str(plugins),
            "--conf-dir",
            str(conf),
        ],
        env,
        tmp_path,
    )
    assert code == 0, err
    assert "munin-run" in out and "systemctl restart munin-node" in out
    for graph in ("length", "age"):
        assert os.path.realpath(plugins / f"celeriac_{graph}") == os.path.realpath(script)
    assert f"env.PYTHONPATH {tmp_path}\n" in (conf / "celeriac").read_text()

    if os.geteuid() == 0:
        # as root, munin-run drops to Munin's default plugin user (nobody), which cannot reach a
        # private virtualenv or the test's broker file: name the user, as an admin would
        user = pwd.getpwuid(os.geteuid()).pw_name
        (conf / "zz-test-user").write_text(f"[celeriac_*]\nuser {user}\n")
    node_conf = tmp_path / "munin-node.conf"
    node_conf.write_text("# minimal: munin-run needs no more here\n")
    options = ["--config", str(node_conf), "--servicedir", str(plugins), "--sconfdir", str(conf)]
    _, help_text, help_err = run([munin_run, "--help"], env, tmp_path)
    if "--ignore-systemd-properties" in help_text + help_err:
        options.append("--ignore-systemd-properties")  # run here, not in a munin-node.service sandbox

    def munin(*args: str) -> list[str]:
        code, out, err = run([munin_run, *options, *args], env, tmp_path)
        assert code == 0, f"munin-run {' '.join(args)}: exit {code}\n{out}\n{err}"
        return out.splitlines()

    queues = sorted({"celery", ODD})
    fields = field_names(queues)
    config = munin("celeriac_length", "config")
    assert config[:3] == [
        "graph_title Celeriac queue length",
        "graph_vlabel messages",
        "graph_category celeriac",
    ]
    for queue in queues:
        assert f"{fields[queue]}.label {queue}" in config
        assert f"{fields[queue]}.warning 50" in config
        assert f"{fields[queue]}.critical 500" in config

    fetched = dict(line.split(".value ") for line in munin("celeriac_length"))
    expected = {fields[q.queue]: str(q.total) for q in producer.broker.queue_lengths(queues)}
    assert fetched == expected == {fields["celery"]: "3", fields[ODD]: "6"}

    ages = dict(line.split(".value ") for line in munin("celeriac_age"))
    assert set(ages) == set(fields.values())
    assert all(float(value) >= 0 for value in ages.values())  # SQLite tells the age: never U

    assert munin("celeriac_length", "autoconf") == ["yes"]
