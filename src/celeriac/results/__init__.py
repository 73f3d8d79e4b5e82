"""Result backends and ``AsyncResult``."""

from __future__ import annotations

from collections.abc import Sequence

from celeriac.errors import ConfigurationError
from celeriac.results.base import PendingResult, ResultBackend, ResultRecord


def backend_from_url(
    url: str, serializer: str, accept: Sequence[str], expires: float | None
) -> ResultBackend:
    """The result backend for ``url`` (``sqlite:///path.db``, ``redis://host:6379/0`` or ``memory://``)."""
    scheme = url.split("://", 1)[0].lower()
    kwargs = {"serializer": serializer, "accept": accept, "expires": expires}
    if scheme in ("sqlite", "db+sqlite"):
        from celeriac.results.sqlite import SQLiteResultBackend

        return SQLiteResultBackend(url, **kwargs)
    if scheme in ("memory", "cache+memory"):
        from celeriac.results.memory import MemoryResultBackend

        return MemoryResultBackend(url, **kwargs)
    if scheme in ("redis", "rediss", "unix"):
        from celeriac.results.redis import RedisResultBackend

        return RedisResultBackend(url, **kwargs)
    raise ConfigurationError(
        f"result_backend={url!r}: unknown scheme {scheme!r}; "
        "supported: sqlite://, memory://, redis://, rediss://, unix:// (a Redis socket)"
    )


__all__ = ["PendingResult", "ResultBackend", "ResultRecord", "backend_from_url"]
