"""``celeriac worker -B``: refused with exit code 2 until periodic tasks land, before anything starts."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid

import pytest

from celeriac.cli import main as cli_main

APP = """
    from celeriac import Celeriac

    app = Celeriac("proj", broker="memory://", backend="memory://")
    app.conf.beat_schedule = {"nightly": {"task": "proj.cleanup", "schedule": 86400}}
    """


@pytest.fixture
def beat_app(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    name = f"celeriac_beat_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP))
    yield name
    module = sys.modules.pop(name, None)
    if module is not None:
        module.app.close()


@pytest.mark.parametrize("flag", ["-B", "--beat"])
def test_worker_beat_exits_2_naming_the_feature_and_what_to_run(beat_app, capsys, monkeypatch, flag):
    def no_master(*args, **kwargs):
        raise AssertionError("the worker must not start")

    monkeypatch.setattr(importlib.import_module("celeriac.worker.master"), "Master", no_master)
    code = cli_main.main(["worker", "-A", beat_app, flag])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "celeriac worker: configuration error: -B/--beat: periodic tasks (beat) are not implemented yet"
        in err
    )
    assert "'nightly' (task proj.cleanup)" in err
    assert "without -B" in err and "celery -A proj beat" in err


def test_worker_help_lists_beat(capsys):
    with pytest.raises(SystemExit):
        cli_main.main(["worker", "--help"])
    assert "-B, --beat" in capsys.readouterr().out
