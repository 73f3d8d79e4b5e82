"""``app.autodiscover_tasks``: lazy by default, packages given or from a fix-up, Celery's lookup rules."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeriac import fixups
from celeriac.errors import ConfigurationError
from celeriac.fixups import Fixup

TASKS = """
from celeriac import shared_task

@shared_task(name="{name}")
def job():
    return "{name}"
"""


@pytest.fixture
def write_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``write_packages({"pkg/__init__.py": "", "pkg/tasks.py": ...})`` on sys.path; the
    modules imported from them are forgotten after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def write(files: dict[str, str]) -> None:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))

    yield write
    for name in set(sys.modules) - before:
        del sys.modules[name]


def tasks_of(name: str) -> str:
    return TASKS.format(name=name)


@pytest.fixture
def two_apps(write_packages):
    write_packages(
        {
            "ad_one/__init__.py": "",
            "ad_one/tasks.py": tasks_of("one.job"),
            "ad_two/__init__.py": "",
            "ad_two/tasks.py": tasks_of("two.job"),
            "ad_plain/__init__.py": "",  # no tasks module: skipped
        }
    )


def test_discovery_waits_for_the_worker_to_import_the_task_modules(app, two_apps):
    app.autodiscover_tasks(["ad_one", "ad_two", "ad_plain"])
    assert "ad_one.tasks" not in sys.modules and "one.job" not in app.tasks

    app.import_task_modules()

    assert {"one.job", "two.job"} <= set(app.task_names())
    assert "ad_plain.tasks" not in sys.modules


def test_force_imports_at_once(app, two_apps):
    app.autodiscover_tasks(["ad_one"], force=True)
    assert "one.job" in app.tasks


def test_a_callable_is_read_at_discovery_not_at_the_call(app, two_apps):
    installed: list[str] = []
    app.autodiscover_tasks(lambda: installed)
    installed.append("ad_two")  # e.g. settings.INSTALLED_APPS, final only once the project is loaded
    app.import_task_modules()
    assert "two.job" in app.tasks


def test_related_name_and_the_packages_themselves(app, write_packages):
    write_packages(
        {
            "ad_jobs/__init__.py": "",
            "ad_jobs/jobs.py": tasks_of("jobs.job"),
            "ad_self/__init__.py": tasks_of("self.job"),
        }
    )
    app.autodiscover_tasks(["ad_jobs"], related_name="jobs", force=True)
    app.autodiscover_tasks(["ad_self"], related_name=None, force=True)
    assert {"jobs.job", "self.job"} <= set(app.tasks)


def test_an_app_config_class_path_names_its_package(app, write_packages):
    write_packages(
        {
            "ad_polls/__init__.py": "",
            "ad_polls/apps.py": "class PollsConfig:\n    name = 'ad_polls'\n",
            "ad_polls/tasks.py": tasks_of("polls.job"),
        }
    )
    app.autodiscover_tasks(["ad_polls.apps.PollsConfig"], force=True)
    assert "polls.job" in app.tasks


def test_an_import_error_inside_a_tasks_module_is_not_skipped(app, write_packages):
    write_packages({"ad_broken/__init__.py": "", "ad_broken/tasks.py": "import ad_missing_dependency\n"})
    app.autodiscover_tasks(["ad_broken"])
    with pytest.raises(ConfigurationError, match=r"'ad_broken\.tasks'.*ad_missing_dependency"):
        app.import_task_modules()


def test_a_missing_package_or_a_bare_string_is_an_error(app, write_packages):
    with pytest.raises(ConfigurationError, match="cannot import package 'ad_nowhere'"):
        app.autodiscover_tasks(["ad_nowhere"], force=True)
    with pytest.raises(ConfigurationError, match=r"not one string: \['ad_one'\]"):
        app.autodiscover_tasks("ad_one", force=True)


def test_no_packages_without_django_settings_is_an_error_at_the_call(app):
    with pytest.raises(ConfigurationError, match="DJANGO_SETTINGS_MODULE is not set"):
        app.autodiscover_tasks()


class FrameworkFixup(Fixup):
    """Stands for Django's: records the order of events."""

    def __init__(self, packages: list[str], events: list[str]) -> None:
        self.packages = packages
        self.events = events

    def setup(self) -> None:
        self.events.append("setup")

    def task_packages(self) -> list[str]:
        self.events.append("task_packages")
        return self.packages


def test_without_packages_the_fixup_names_them_after_setting_up(make_app, two_apps, monkeypatch):
    events: list[str] = []
    monkeypatch.setattr(fixups, "from_environment", lambda: [FrameworkFixup(["ad_one"], events)])
    app = make_app(include=["ad_two.tasks"])

    app.autodiscover_tasks()
    assert events == [], "nothing happens at the call"
    app.import_task_modules()

    assert events == ["setup", "task_packages"]
    assert {"one.job", "two.job"} <= set(app.tasks)
