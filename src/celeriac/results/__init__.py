"""Result backends and ``AsyncResult``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.brokers.base import mask_password
from celeriac.brokers.redis.sentinel import refuse_tls
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
    "sentinel": ("celeriac.results.redis", "RedisResultBackend"),
}
#: Backends that read ``result_backend_transport_options`` (the others have none to read).
_TAKE_TRANSPORT_OPTIONS = frozenset({"celeriac.results.redis"})


def backend_from_url(
    url: str,
    serializer: str,
    accept: Sequence[str],
    expires: float | None,
    transport_options: Mapping[str, Any] | None = None,
) -> ResultBackend:
    """The result backend for ``url`` (``sqlite:///path.db``, ``redis://host:6379/0``,
    ``sentinel://host:26379/0;...`` or ``memory://``). ``transport_options``
    (``result_backend_transport_options``) go to the Redis backend; the others take none."""
    scheme = url.split("://", 1)[0].lower()
    refuse_tls(url, "result_backend")
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"result_backend={mask_password(url)!r}: unknown scheme {scheme!r}; supported: sqlite://, "
            "memory://, redis://, rediss://, unix:// (a Redis socket), sentinel:// (Redis Sentinel)"
        )
    module_name, class_name = SCHEMES[scheme]
    backend_class: type[ResultBackend] = getattr(importlib.import_module(module_name), class_name)
    extra: dict[str, Any] = {}
    if module_name in _TAKE_TRANSPORT_OPTIONS:
        extra["transport_options"] = dict(transport_options or {})
    return backend_class(url, serializer=serializer, accept=accept, expires=expires, **extra)


__all__ = ["SCHEMES", "PendingResult", "ResultBackend", "ResultRecord", "backend_from_url"]
