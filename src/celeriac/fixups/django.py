"""Django: set up before the task modules import, autodiscovery, database connections around tasks.

What Celery's Django fix-up does, for a project that follows Celery's "First steps with
Django" (``docs/django.md``). Installed when an app is created with
``DJANGO_SETTINGS_MODULE`` set and Django importable:

* **Set-up.** ``django.setup()`` runs in the master before it imports the task modules, so
  a ``tasks.py`` that imports models works, and the children inherit the ready app registry
  at fork.
* **Autodiscovery.** ``app.autodiscover_tasks()`` without packages searches the installed
  apps (each ``AppConfig.name``).
* **After fork.** A child abandons the database connections the master had open: it drops
  them without closing them, because closing says goodbye on a socket (or an SQLite handle)
  the master still owns, and opens its own on first use. The abandoned ones stay referenced
  until the child leaves with ``os._exit``, so they are never finalised either. Inherited
  PostgreSQL connection pools (Django 5.1+) are abandoned the same way.
* **Around each task.** ``close_old_connections()`` before and after, as Django does around
  each request: a connection past ``CONN_MAX_AGE`` (0, the default: after every task) or
  left unusable is closed, the next query opens a new one. Caches are closed after each
  task; every connection is closed when the child exits.

Differences from Celery, each on purpose: Celery closes every connection around each task
whatever ``CONN_MAX_AGE`` says; celeriac honours ``CONN_MAX_AGE``, as Django's request cycle
does. Celery's ``CELERY_DB_REUSE_MAX`` is not read (``CONN_MAX_AGE`` does that job).
Django's system checks are not run at worker start (``manage.py check`` does it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celeriac.errors import ConfigurationError
from celeriac.fixups.base import Fixup
from celeriac.hooks import Hooks

if TYPE_CHECKING:
    from celeriac.context import Request
    from celeriac.hooks import Outcome

logger = logging.getLogger("celeriac.fixups.django")

#: The oldest Django this module is written for (``connections.all(initialized_only=True)``).
MIN_VERSION = (4, 2)


def fixup(settings_module: str) -> DjangoFixup | None:
    """The Django fix-up, or None (with a warning) when Django is not installed."""
    try:
        import django
    except ImportError:
        logger.warning(
            "DJANGO_SETTINGS_MODULE=%s is set but Django is not installed: the worker will not call "
            "django.setup() or close database connections around tasks (install Django, or unset "
            "DJANGO_SETTINGS_MODULE)",
            settings_module,
        )
        return None
    if django.VERSION[:2] < MIN_VERSION:
        raise ConfigurationError(
            f"Django {django.get_version()} is too old for celeriac's Django support "
            f"(DJANGO_SETTINGS_MODULE={settings_module}): upgrade to Django "
            f"{'.'.join(map(str, MIN_VERSION))} or later"
        )
    return DjangoFixup(settings_module)


class DjangoFixup(Fixup):
    """``django.setup()`` before task modules, installed apps for autodiscovery, :class:`DjangoHooks`."""

    name = "django"

    def __init__(self, settings_module: str) -> None:
        self.settings_module = settings_module

    def setup(self) -> None:
        """``django.setup()``; a settings module that cannot load is a ConfigurationError."""
        import django
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        enabled = _enabled_loggers()
        try:
            django.setup()
        except (ImportError, ImproperlyConfigured) as exc:
            raise ConfigurationError(
                f"django.setup() failed with DJANGO_SETTINGS_MODULE={self.settings_module}: {exc}"
            ) from exc
        _keep_enabled(enabled)
        if settings.DEBUG:
            logger.warning(
                "Django's DEBUG is True: the worker keeps the SQL of every query its tasks run in "
                "memory (up to 9000 per connection); set DEBUG = False for workers in production"
            )

    def task_packages(self) -> list[str]:
        """The name of every installed Django app."""
        from django.apps import apps
        from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured

        try:
            configs = apps.get_app_configs()
        except (AppRegistryNotReady, ImproperlyConfigured) as exc:
            raise ConfigurationError(
                "autodiscover_tasks() without packages reads Django's installed apps, which are not "
                "loaded yet: call django.setup() before autodiscover_tasks(force=True), or leave out "
                "force=True (the worker discovers the tasks after setting Django up)"
            ) from exc
        return [config.name for config in configs]

    def hooks(self) -> DjangoHooks:
        return DjangoHooks()


class DjangoHooks(Hooks):
    """Database connections and caches in the children (see the module docstring).

    ``connections`` and ``caches`` default to Django's handlers, looked up on first use
    (tests pass their own).
    """

    def __init__(self, connections: Any = None, caches: Any = None) -> None:
        self._connections = connections
        self._caches = caches
        #: what the child inherited from the master at fork: referenced, never closed
        self.abandoned: list[Any] = []

    @property
    def connections(self) -> Any:
        if self._connections is None:
            from django.db import connections

            self._connections = connections
        return self._connections

    @property
    def caches(self) -> Any:
        if self._caches is None:
            from django.core.cache import caches

            self._caches = caches
        return self._caches

    def after_child_start(self, index: int) -> None:
        for conn in self.connections.all(initialized_only=True):
            if conn.connection is not None:
                self.abandoned.append(conn.connection)
                conn.connection = None
            # Django 5.1+ keeps PostgreSQL pools in a dict on the backend's class.
            pools = getattr(type(conn), "_connection_pools", None)
            if isinstance(pools, dict) and conn.alias in pools:
                self.abandoned.append(pools.pop(conn.alias))
        self.caches.close_all()

    def before_task(self, request: Request) -> None:
        self._close_old_connections()

    def after_task(self, request: Request, outcome: Outcome) -> None:
        self._close_old_connections()
        self.caches.close_all()

    def before_child_exit(self, index: int) -> None:
        self.connections.close_all()

    def _close_old_connections(self) -> None:
        """Django's ``close_old_connections()``, one connection's failure logged and skipped."""
        from django.db import DatabaseError

        for conn in self.connections.all(initialized_only=True):
            try:
                conn.close_if_unusable_or_obsolete()
            except DatabaseError as exc:
                logger.warning("could not close database connection %r: %s", conn.alias, exc)


def on_commit(callback: Callable[[], Any]) -> None:
    """Run ``callback`` when the current database transaction commits (at once outside one)."""
    try:
        from django.db import transaction
    except ImportError:
        raise ConfigurationError(
            "delay_on_commit() and apply_async_on_commit() send the task when Django's database "
            "transaction commits, and Django is not installed: use delay() or apply_async()"
        ) from None
    transaction.on_commit(callback)


def _enabled_loggers() -> list[logging.Logger]:
    """celeriac's loggers that are enabled now."""
    manager = logging.Logger.manager
    return [
        each
        for name, each in list(manager.loggerDict.items())
        if (name == "celeriac" or name.startswith("celeriac."))
        and isinstance(each, logging.Logger)
        and not each.disabled
    ]


def _keep_enabled(loggers: list[logging.Logger]) -> None:
    """Enable again the loggers Django's ``LOGGING`` disabled.

    ``dictConfig`` disables every existing logger the configuration does not name unless it
    says ``disable_existing_loggers: False``, and that is its default: a ``LOGGING`` without
    the key would silence the worker's own lines. To configure celeriac's loggers from
    ``LOGGING``, name ``celeriac`` in its ``loggers``.
    """
    silenced = [each for each in loggers if each.disabled]
    for each in silenced:
        each.disabled = False
    if silenced:
        logger.info(
            "Django's LOGGING disabled %d celeriac logger(s) (disable_existing_loggers); they stay on: "
            "name 'celeriac' in LOGGING['loggers'] to configure them",
            len(silenced),
        )
