"""Layer 2: the store, small atomic key-value primitives for coordination features.

``store_from_url`` picks the implementation by URL scheme and imports it lazily;
``select_store`` picks the URL an app's store lives at: its result backend, else
its broker when the broker can hold one (SQLite, Redis, memory). RabbitMQ cannot:
an app on RabbitMQ needs a ``result_backend`` for the features built on the store.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from celeriac.brokers.base import mask_password
from celeriac.brokers.redis.sentinel import refuse_tls
from celeriac.errors import ConfigurationError
from celeriac.store.base import Store

#: URL scheme → (module, class). Modules are imported only when their scheme is used.
SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("celeriac.store.sqlite", "SQLiteStore"),
    "db+sqlite": ("celeriac.store.sqlite", "SQLiteStore"),
    "sqla+sqlite": ("celeriac.store.sqlite", "SQLiteStore"),
    "redis": ("celeriac.store.redis", "RedisStore"),
    "rediss": ("celeriac.store.redis", "RedisStore"),
    "unix": ("celeriac.store.redis", "RedisStore"),
    "sentinel": ("celeriac.store.redis", "RedisStore"),
    "memory": ("celeriac.store.memory", "MemoryStore"),
    "cache+memory": ("celeriac.store.memory", "MemoryStore"),
}
#: Broker schemes that cannot hold the store.
RABBITMQ_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
#: What needs the store, for error messages.
FEATURES = "chords, revoke, rate limits and beat (its leader lease and last-run times)"
_SET_A_BACKEND = (
    'set result_backend, e.g. result_backend = "redis://localhost:6379/0" or '
    'result_backend = "sqlite:///celeriac-results.db"'
)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def store_from_url(
    url: str,
    setting: str = "result_backend",
    transport_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Store:
    """The store at ``url``: ``sqlite:///celeriac.db``, ``redis://host:6379/0``,
    ``sentinel://host:26379/0;...`` or ``memory://``.

    ``setting`` names where the URL came from, for error messages;
    ``transport_options`` are that setting's transport options, of which a Redis
    store reads what a ``sentinel://`` URL needs (``master_name``, ...); ``options`` go
    to the implementation (e.g. ``prefix=`` for Redis, ``clock=`` for memory and
    SQLite). Each ``memory://`` store is a new, empty store, as each memory broker
    and memory result backend is: share the object to share its contents.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"{setting}={url!r} is not a URL: use e.g. 'sqlite:///celeriac.db'")
    scheme = _scheme(url)
    refuse_tls(url, setting)
    if scheme in RABBITMQ_SCHEMES:
        raise ConfigurationError(
            f"{setting}={mask_password(url)!r}: RabbitMQ cannot hold the store that {FEATURES} "
            f"need; {_SET_A_BACKEND}"
        )
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(SCHEMES))
        raise ConfigurationError(
            f"{setting}={mask_password(url)!r}: no store for the scheme {scheme!r}; supported: {known}"
        )
    module_name, class_name = SCHEMES[scheme]
    store_class: type[Store] = getattr(importlib.import_module(module_name), class_name)
    if module_name == "celeriac.store.redis":  # its connection errors name the setting to fix
        options.setdefault("setting", setting)
        options.setdefault("sentinel", dict(transport_options or {}))
    return store_class(url, **options)


def select_store(
    result_backend: str | None,
    broker_url: str,
    *,
    backend_transport_options: Mapping[str, Any] | None = None,
    broker_transport_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Store:
    """The app's store: at ``result_backend`` if set, else at the broker when it can hold one.

    The transport options of the setting whose URL is used go with it
    (``result_backend_transport_options`` or ``broker_transport_options``: a
    ``sentinel://`` URL reads its ``master_name`` there). A RabbitMQ broker
    (``amqp://``, ``amqps://``, ``pyamqp://``) without a result backend raises
    :class:`~celeriac.errors.ConfigurationError` naming ``result_backend`` and what
    needs it.
    """
    if result_backend:
        return store_from_url(result_backend, "result_backend", backend_transport_options, **options)
    if isinstance(broker_url, str) and _scheme(broker_url) in RABBITMQ_SCHEMES:
        raise ConfigurationError(
            f"broker_url={mask_password(broker_url)!r} is RabbitMQ, which cannot hold the store that "
            f"{FEATURES} need, and no result_backend is set: {_SET_A_BACKEND}"
        )
    return store_from_url(broker_url, "broker_url", broker_transport_options, **options)


__all__ = ["SCHEMES", "Store", "select_store", "store_from_url"]
