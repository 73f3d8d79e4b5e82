"""Finding task modules in packages: what ``app.autodiscover_tasks()`` imports.

For each package, ``<package>.<related_name>`` (``tasks`` by default) is imported when it
exists and skipped when it does not, as Celery does. An error raised while importing a
module that does exist (a missing dependency inside ``tasks.py``) is not skipped: it is a
ConfigurationError naming the module. A package entry may also be a Django ``AppConfig``
class path as ``INSTALLED_APPS`` allows (``'polls.apps.PollsConfig'``): its ``name``
attribute names the package.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Iterable

from celeriac.errors import ConfigurationError

#: What ``autodiscover_tasks`` takes: package names, or a callable returning them (read late).
Packages = Iterable[str] | Callable[[], Iterable[str]]


def related_modules(packages: Iterable[str], related_name: str | None = "tasks") -> list[types.ModuleType]:
    """Import ``<package>.<related_name>`` for each package that has one; the modules imported.

    With ``related_name`` None or empty, each package itself is imported.
    """
    found = []
    for entry in packages:
        package = _package(entry)
        if not related_name:
            found.append(_import(package, f"autodiscover_tasks: cannot import package {package!r}"))
            continue
        module = _import_if_present(f"{package}.{related_name}")
        if module is not None:
            found.append(module)
    return found


def _import(name: str, failure: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(f"{failure}: {exc}") from exc


def _package(entry: str) -> str:
    """The package ``entry`` names: itself, or the ``name`` of the class it points to."""
    try:
        importlib.import_module(entry)
        return entry
    except ModuleNotFoundError as exc:
        if exc.name != entry or "." not in entry:
            raise ConfigurationError(f"autodiscover_tasks: cannot import package {entry!r}: {exc}") from exc
    except ImportError as exc:
        raise ConfigurationError(f"autodiscover_tasks: cannot import package {entry!r}: {exc}") from exc
    parent, _, attribute = entry.rpartition(".")
    target = getattr(_import(parent, f"autodiscover_tasks: cannot import {entry!r}"), attribute, None)
    name = getattr(target, "name", None)
    if not isinstance(target, type) or not isinstance(name, str):
        raise ConfigurationError(
            f"autodiscover_tasks: {entry!r} is neither a package nor a class with a package `name` "
            "(such as a Django AppConfig)"
        )
    return name


def _import_if_present(module: str) -> types.ModuleType | None:
    """Import ``module``; None when it does not exist (its own import errors are raised)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise ConfigurationError(f"cannot import task module {module!r} (autodiscover_tasks): {exc}") from exc
    except ImportError as exc:
        raise ConfigurationError(f"cannot import task module {module!r} (autodiscover_tasks): {exc}") from exc
