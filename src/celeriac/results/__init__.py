"""Result backends and ``AsyncResult``."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from celeriac.errors import ConfigurationError
from celeriac.results.base import PendingResult, ResultBackend, ResultRecord

#: URL scheme → (module, class). Modules are imported only when their scheme is used.
SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("celeriac.results.sqlite", "SQLiteResultBackend"),
    "db+sqlite": ("celeriac.results.sqlite", "SQLiteResultBackend"),
    "memory": ("celeriac.results.memory", "MemoryResultBackend"),
    "cache+memory": ("celeriac.results.memory", "MemoryResultBackend"),
    "redis": ("celeriac.results.redis", "RedisResultBackend"),
    "rediss": ("celeriac.results.redis", "RedisResultBackend"),
    "unix": ("celeriac.results.redis", "RedisResultBackend"),
}


def backend_from_url(
    url: str, serializer: str, accept: Sequence[str], expires: float | None
) -> ResultBackend:
    """The result backend for ``url`` (``sqlite:///path.db``, ``redis://host:6379/0`` or ``memory://``)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"result_backend={url!r}: unknown scheme {scheme!r}; "
            "supported: sqlite://, memory://, redis://, rediss://, unix:// (a Redis socket)"
        )
    module_name, class_name = SCHEMES[scheme]
    backend_class: type[ResultBackend] = getattr(importlib.import_module(module_name), class_name)
    return backend_class(url, serializer=serializer, accept=accept, expires=expires)


__all__ = ["SCHEMES", "PendingResult", "ResultBackend", "ResultRecord", "backend_from_url"]
