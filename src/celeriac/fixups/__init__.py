"""Fix-ups: what a web framework needs from the app and from the worker (Celery's ``celery.fixups``).

An app picks its fix-ups when it is created, from the environment: today Django's
(:mod:`celeriac.fixups.django`), when ``DJANGO_SETTINGS_MODULE`` is set. A fix-up gives
the app two things and the worker a third:

* :meth:`Fixup.setup`, run before the task modules are imported (``django.setup()``);
* :meth:`Fixup.task_packages`, the packages ``app.autodiscover_tasks()`` searches when it is
  given none (Django's installed apps);
* :meth:`Fixup.hooks`, lifecycle hooks the app adds to its chain: the worker runs them
  around tasks and children like any other hooks, and never names the framework.
"""

from __future__ import annotations

from celeriac import config
from celeriac.fixups.base import Fixup

__all__ = ["Fixup", "from_environment"]


def from_environment() -> list[Fixup]:
    """The fix-ups the environment asks for: Django's when ``DJANGO_SETTINGS_MODULE`` is set."""
    settings_module = config.django_settings_module()
    if not settings_module:
        return []
    from celeriac.fixups import django

    fixup = django.fixup(settings_module)
    return [] if fixup is None else [fixup]
