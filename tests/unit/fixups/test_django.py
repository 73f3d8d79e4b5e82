"""The Django fix-up: installed from DJANGO_SETTINGS_MODULE, connections in the children, on_commit.

Django's settings are global to a process, so nothing here configures them: connections
and caches are stand-ins with the handler API the hooks use, and the whole path with a
real project runs in tests/process/test_django.py.
"""

from __future__ import annotations

import logging
import sys

import django
import pytest
from django.conf import LazySettings
from django.db import DatabaseError

from celeriac import fixups
from celeriac.errors import ConfigurationError
from celeriac.fixups import django as django_fixup
from celeriac.fixups.django import DjangoFixup, DjangoHooks

# -- installation ---------------------------------------------------------------------------


def test_an_app_created_with_django_settings_runs_the_django_hooks(make_app, monkeypatch):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "proj.settings")
    app = make_app()
    assert [type(fixup) for fixup in app._fixups] == [DjangoFixup]
    assert any(isinstance(hooks, DjangoHooks) for hooks in app.hooks._hooks)


def test_without_django_settings_there_is_no_fixup(make_app):
    app = make_app()
    assert app._fixups == []
    assert not any(isinstance(hooks, DjangoHooks) for hooks in app.hooks._hooks)


def test_django_settings_without_django_installed_is_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "proj.settings")
    monkeypatch.setitem(sys.modules, "django", None)
    with caplog.at_level(logging.WARNING, "celeriac.fixups.django"):
        assert fixups.from_environment() == []
    assert "Django is not installed" in caplog.text


def test_a_django_older_than_supported_is_refused(monkeypatch):
    monkeypatch.setattr(django, "VERSION", (3, 2, 25, "final", 0))
    monkeypatch.setattr(django, "get_version", lambda: "3.2.25")
    with pytest.raises(ConfigurationError, match=r"Django 3\.2\.25 is too old.*4\.2 or later"):
        django_fixup.fixup("proj.settings")


def test_a_settings_module_that_does_not_import_stops_the_setup(monkeypatch):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "celeriac_no_such_project.settings")
    with pytest.raises(ConfigurationError, match="DJANGO_SETTINGS_MODULE=celeriac_no_such_project.settings"):
        DjangoFixup("celeriac_no_such_project.settings").setup()


def test_autodiscovery_before_django_is_set_up_says_what_to_do():
    with pytest.raises(ConfigurationError, match=r"call django.setup\(\) before"):
        DjangoFixup("proj.settings").task_packages()


def test_config_from_django_settings_with_the_celery_namespace(app):
    # a private one: django.conf.settings stays unconfigured. No SECRET_KEY: reading it would
    # raise, and only the CELERY_ names are read (Django 4.2 also warns on reading deprecated ones)
    settings = LazySettings()
    settings.configure(
        CELERY_BROKER_URL="memory://",
        CELERY_TASK_ALWAYS_EAGER=True,
        CELERY_WORKER_CONCURRENCY=3,
        CELERY_TASK_TIME_LIMIT=1800,
        TIME_ZONE="Europe/Paris",  # Django's own: not read
    )
    app.config_from_object(settings, namespace="CELERY")
    conf = app.conf
    assert (conf.broker_url, conf.task_always_eager, conf.worker_concurrency) == ("memory://", True, 3)
    assert conf.task_time_limit == 1800.0 and conf.timezone == "UTC"


# -- connections in the children --------------------------------------------------------------


class RawConnection:
    """A driver connection: records closes (a close would talk to the server)."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Wrapper:
    """Django's per-alias database wrapper, the parts the hooks use."""

    def __init__(self, alias: str, connection: RawConnection | None = None, fails: bool = False) -> None:
        self.alias = alias
        self.connection = connection
        self.fails = fails
        self.checked = 0
        self.closed = 0

    def close_if_unusable_or_obsolete(self) -> None:
        self.checked += 1
        if self.fails:
            raise DatabaseError("server closed the connection unexpectedly")

    def close(self) -> None:
        self.closed += 1
        self.connection = None


class PooledWrapper(Wrapper):
    """PostgreSQL's wrapper in Django 5.1+: pools in a dict on the class, per alias."""

    _connection_pools: dict[str, object] = {}


class Handler:
    """``django.db.connections``: only initialized connections are listed when asked."""

    def __init__(self, *wrappers: Wrapper, uninitialized: Wrapper | None = None) -> None:
        self.wrappers = list(wrappers)
        self.uninitialized = uninitialized

    def all(self, initialized_only: bool = False) -> list[Wrapper]:
        extra = [] if initialized_only or self.uninitialized is None else [self.uninitialized]
        return self.wrappers + extra

    def close_all(self) -> None:
        for wrapper in self.all(initialized_only=True):
            wrapper.close()


class Caches:
    def __init__(self) -> None:
        self.closed = 0

    def close_all(self) -> None:
        self.closed += 1


def test_a_new_child_abandons_the_masters_connections_without_closing_them(monkeypatch):
    master_raw, pool = RawConnection(), object()
    monkeypatch.setattr(PooledWrapper, "_connection_pools", {"replica": pool})
    default, replica = Wrapper("default", master_raw), PooledWrapper("replica")
    caches = Caches()
    hooks = DjangoHooks(Handler(default, replica), caches)

    hooks.after_child_start(0)

    assert default.connection is None, "the child opens its own on first use"
    assert not master_raw.closed and default.closed == 0, "closing would end the master's session"
    assert PooledWrapper._connection_pools == {}, "the inherited pool is not used either"
    assert hooks.abandoned == [master_raw, pool]
    assert caches.closed == 1


def test_old_connections_are_closed_around_each_task_and_all_at_exit(caplog):
    broken, default = Wrapper("broken", RawConnection(), fails=True), Wrapper("default", RawConnection())
    never_used = Wrapper("never_used")
    caches = Caches()
    hooks = DjangoHooks(Handler(broken, default, uninitialized=never_used), caches)

    hooks.before_task(None)
    hooks.after_task(None, None)

    assert (default.checked, broken.checked, never_used.checked) == (2, 2, 0)
    assert caches.closed == 1, "caches close after the task"
    assert "could not close database connection 'broken'" in caplog.text
    hooks.before_child_exit(0)
    assert default.connection is None and broken.connection is None


# -- delay_on_commit ------------------------------------------------------------------------


def test_delay_on_commit_sends_when_the_transaction_commits(app, monkeypatch):
    @app.task
    def add(x, y):
        return x + y

    pending = []
    monkeypatch.setattr(django_fixup, "on_commit", pending.append)
    assert add.delay_on_commit(1, 2) is None
    add.apply_async_on_commit((3, 4), countdown=5)
    assert app.broker.queue_length("celery").ready + app.broker.queue_length("celery").scheduled == 0

    for commit in pending:
        commit()

    length = app.broker.queue_length("celery")
    assert (length.ready, length.scheduled) == (1, 1)


def test_delay_on_commit_without_django_says_to_use_delay(app, monkeypatch):
    @app.task
    def add(x, y):
        return x + y

    monkeypatch.setitem(sys.modules, "django.db", None)
    with pytest.raises(ConfigurationError, match="Django is not installed: use delay"):
        add.delay_on_commit(1, 2)
