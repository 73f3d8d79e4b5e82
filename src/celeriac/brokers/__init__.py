"""Layer 2: brokers. ``from_url`` picks the module by URL scheme and imports it lazily."""

from __future__ import annotations

import importlib

from celeriac.brokers.base import Broker, BrokerOptions, Delivery, Outgoing, QueueLength, mask_password
from celeriac.brokers.redis.sentinel import refuse_tls
from celeriac.errors import ConfigurationError

#: URL scheme → (module, class). Modules are imported only when their scheme is used.
SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("celeriac.brokers.sqlite.broker", "SQLiteBroker"),
    "memory": ("celeriac.brokers.memory", "MemoryBroker"),
    "redis": ("celeriac.brokers.redis.broker", "RedisBroker"),
    "rediss": ("celeriac.brokers.redis.broker", "RedisBroker"),
    "unix": ("celeriac.brokers.redis.broker", "RedisBroker"),
    "sentinel": ("celeriac.brokers.redis.broker", "RedisBroker"),
    "amqp": ("celeriac.brokers.amqp.broker", "AMQPBroker"),
    "amqps": ("celeriac.brokers.amqp.broker", "AMQPBroker"),
    "pyamqp": ("celeriac.brokers.amqp.broker", "AMQPBroker"),
}


def from_url(url: str, options: BrokerOptions | None = None) -> Broker:
    """Return a broker for ``url``: ``sqlite:///celeriac.db``, ``redis://host:6379/0``,
    ``sentinel://host:26379/0;sentinel://host2:26379/0``, ``amqp://guest@host//`` or ``memory://``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"broker_url={url!r} is not a URL: use e.g. 'sqlite:///celeriac.db'")
    scheme = url.split("://", 1)[0].lower()
    refuse_tls(url, "broker_url")
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(SCHEMES))
        raise ConfigurationError(
            f"broker_url={mask_password(url)!r}: unknown broker scheme {scheme!r}; supported: {known}"
        )
    module_name, class_name = SCHEMES[scheme]
    broker_class: type[Broker] = getattr(importlib.import_module(module_name), class_name)
    return broker_class(url, options)


__all__ = ["Broker", "BrokerOptions", "Delivery", "Outgoing", "QueueLength", "from_url"]
