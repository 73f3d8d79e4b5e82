"""Connections to Redis: URL checks, a measured connection pool, errors with a fix.

Shared by the Redis broker, the Redis result backend and the Redis store. One
:class:`RedisConnector` per process (redis-py's pools reset themselves after
``fork()``; the connector also starts afresh in a child).

A ``sentinel://`` URL (:mod:`~celeriac.brokers.redis.sentinel`) gives a client
of the master the sentinels name: every new connection asks them where the
master is, so after a failover the client reaches the new master without being
rebuilt. A command cut off by the failover fails like any lost connection
(:class:`~celeriac.errors.BrokerConnectionError`), and the callers retry as they
do for a Redis that went away; a connection to a demoted master is dropped
instead of being used again.

The pool is a blocking pool of at most ``broker_pool_limit`` connections: a
caller that finds every connection in use waits up to ``broker_pool_timeout``
seconds and then gets a :class:`~celeriac.errors.BrokerError` naming the
setting to raise. The pool counts how long callers waited and how many
connections are in use (:meth:`RedisConnector.pool_stats`), for the monitor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from celeriac.brokers.base import PoolStats, mask_password
from celeriac.brokers.redis.sentinel import (
    SentinelOptions,
    SentinelURL,
    is_sentinel,
    options_setting,
    parse_url,
    read_options,
)
from celeriac.errors import BrokerConnectionError, BrokerError, ConfigurationError

try:
    import redis
    from redis import exceptions as redis_errors
    from redis import sentinel as redis_sentinel
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - exercised only without the extra installed
    redis = None  # type: ignore[assignment]
    redis_errors = None  # type: ignore[assignment]
    redis_sentinel = None  # type: ignore[assignment]

logger = logging.getLogger("celeriac.redis")

T = TypeVar("T")

SCHEMES = ("redis", "rediss", "unix", "sentinel")


def require_redis(setting: str) -> None:
    """Fail with the install command when redis-py is missing."""
    if redis is None:
        raise ConfigurationError(
            f"{setting} is a Redis URL but the Redis client is not installed: pip install 'celeriac[redis]'"
        )


def check_url(url: str, setting: str) -> str:
    """Validate a Redis URL; return it. The error names the setting and a valid example."""
    parts = urlsplit(url)
    example = "redis://localhost:6379/0, rediss://host:6380/0 or unix:///run/redis.sock?db=0"
    if parts.scheme in ("sentinel", "sentinels"):
        parse_url(url, setting)
        return url
    shown = mask_password(url)  # errors never show the password
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(f"{setting}={shown!r}: not a Redis URL; use e.g. {example}")
    if ";" in url:
        raise ConfigurationError(
            f"{setting}={shown!r}: a list of Redis URLs (kombu's failover form) is not supported; "
            "for a Redis that fails over, use Redis Sentinel: sentinel://host:26379/0;sentinel://... "
            "with master_name in the transport options (docs/redis.md, Redis Sentinel)"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError(
                f"{setting}={shown!r}: a unix:// URL needs a socket path; e.g. {example}"
            )
        return url
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"{setting}={shown!r}: the port is not a number; e.g. {example}") from None
    if port == 0:
        raise ConfigurationError(f"{setting}={shown!r}: port 0 is not valid")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigurationError(
            f"{setting}={shown!r}: the database after the host must be a number (got {db!r}); e.g. {example}"
        )
    return url


where = mask_password


class _MeasuredPool:
    """Mixin for redis-py's blocking pool: time every ``get_connection``."""

    def _init_stats(self) -> None:
        self._stats_lock = threading.Lock()
        self.acquired = 0
        self.created = 0
        self.making = 0.0
        self.waits = 0
        self.wait_total = 0.0
        self.wait_max = 0.0
        self.timeouts = 0

    def make_connection(self) -> Any:
        started = time.perf_counter()
        connection = super().make_connection()  # type: ignore[misc]
        with self._stats_lock:
            self.created += 1
            self.making += time.perf_counter() - started
        return connection

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        making = self.making
        try:
            connection = super().get_connection(*args, **kwargs)  # type: ignore[misc]
        except redis_errors.ConnectionError as exc:
            if "No connection available" not in str(exc):
                raise
            with self._stats_lock:
                self.timeouts += 1
            raise BrokerError(
                f"all {getattr(self, 'max_connections', '?')} pooled Redis connections stayed in use "
                f"for {getattr(self, 'timeout', '?')} s: raise broker_pool_limit, or broker_pool_timeout "
                "if callers may wait longer"
            ) from None
        # time spent making a new connection is not waiting for a free one
        waited = time.perf_counter() - started - (self.making - making)
        with self._stats_lock:
            self.acquired += 1
            if waited > 0.001:
                self.waits += 1
            self.wait_total += waited
            self.wait_max = max(self.wait_max, waited)
        return connection


_POOL_CLASSES: dict[tuple[bool, bool], type] = {}


def _pool_class(blocking: bool, sentinel: bool = False) -> type:
    """The measured pool: blocking (``broker_pool_limit``) or not, of one server or of the
    master the sentinels name."""
    if (blocking, sentinel) not in _POOL_CLASSES:
        bases: tuple[type, ...] = (redis.BlockingConnectionPool if blocking else redis.ConnectionPool,)
        if sentinel:  # asks the sentinels for the master's address before connecting
            bases = (redis_sentinel.SentinelConnectionPool, *bases)

        class MeasuredPool(_MeasuredPool, *bases):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self._init_stats()
                super().__init__(*args, **kwargs)

            def in_use(self) -> int:
                if blocking:
                    available = sum(1 for conn in self.pool.queue if conn is not None)
                    return len(self._connections) - available
                return len(self._in_use_connections)

            def release(self, connection: Any) -> None:
                # A connection to a master that is no longer the master is closed and not
                # pooled again; the blocking pool would go on counting it as in use.
                if blocking and not self.owns_connection(connection):
                    with self._lock, contextlib.suppress(ValueError):
                        self._connections.remove(connection)
                super().release(connection)

        _POOL_CLASSES[(blocking, sentinel)] = MeasuredPool
    return _POOL_CLASSES[(blocking, sentinel)]


class RedisConnector:
    """A redis-py client for ``url`` in this process, with a measured blocking pool.

    ``options`` are socket options: ``socket_timeout``, ``socket_connect_timeout``,
    ``socket_keepalive``, ``health_check_interval``, ``retry_on_timeout``.
    ``sentinel`` are the transport options a ``sentinel://`` URL reads (``master_name``,
    ``sentinel_kwargs``, ``min_other_sentinels``; other names are ignored): a missing
    ``master_name`` is an error naming the setting that holds them.
    """

    def __init__(
        self,
        url: str,
        setting: str = "broker_url",
        pool_limit: int | None = 10,
        pool_timeout: float = 10.0,
        options: Mapping[str, Any] | None = None,
        sentinel: Mapping[str, Any] | None = None,
    ) -> None:
        require_redis(setting)
        self.url = check_url(url, setting)
        self.setting = setting
        self.pool_limit = pool_limit
        self.pool_timeout = pool_timeout
        self.options = dict(options or {})
        self.sentinel: tuple[SentinelURL, SentinelOptions] | None = None
        if is_sentinel(url):
            self.sentinel = parse_url(url, setting), read_options(sentinel or {}, setting)
        self._pid = -1
        self._client: Any = None
        self._pool: Any = None
        self._manager: Any = None  # the sentinels' clients, for a sentinel:// URL
        #: calls that failed for a refused, lost or timed-out connection: after one, Redis may
        #: have lost writes it acknowledged (a restart, a failover to a replica that lagged)
        self.losses = 0
        #: Lua source -> its redis-py Script (its SHA; run with an explicit client, so it
        #: outlives a fork and serves every connection and pipeline)
        self._scripts: dict[str, Any] = {}

    @property
    def location(self) -> str:
        return where(self.url)

    def _make(self) -> None:
        if self.sentinel is not None:
            self._make_sentinel(*self.sentinel)
            return
        kwargs = dict(self.options)
        if self.pool_limit:
            kwargs.update(max_connections=self.pool_limit, timeout=self.pool_timeout)
        try:
            self._pool = _pool_class(bool(self.pool_limit)).from_url(self.url, **kwargs)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{self.setting}={self.location!r}: {exc}") from None
        self._client = redis.Redis(connection_pool=self._pool)
        self._pid = os.getpid()

    def _make_sentinel(self, url: SentinelURL, options: SentinelOptions) -> None:
        """A client of the master named ``options.master_name``, found through the sentinels."""
        # the master's connections: the socket options, db and credentials of the URL
        master = dict(self.options, db=url.db, username=url.username, password=url.password)
        # the sentinels' own: the same socket options (no hanging on a dead sentinel) unless
        # sentinel_kwargs says otherwise, and nothing of the master's credentials. No retries:
        # redis-py's default spends seconds on a dead sentinel, and the next one is the retry
        asking: dict[str, Any] = {k: v for k, v in self.options.items() if k.startswith("socket_")}
        asking["retry"] = Retry(NoBackoff(), 0)
        asking.update(options.sentinel_kwargs)
        try:
            manager = redis_sentinel.Sentinel(
                list(url.sentinels),
                min_other_sentinels=options.min_other_sentinels,
                sentinel_kwargs=asking,
                **master,
            )
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{options_setting(self.setting)} sentinel_kwargs: not a Redis connection option ({exc})"
            ) from None
        pool_class = _pool_class(bool(self.pool_limit), sentinel=True)
        pool_kwargs: dict[str, Any] = {}
        if self.pool_limit:
            pool_kwargs.update(max_connections=self.pool_limit, timeout=self.pool_timeout)
        self._client = manager.master_for(
            options.master_name, connection_pool_class=pool_class, **pool_kwargs
        )
        self._pool = self._client.connection_pool
        self._manager = manager
        self._pid = os.getpid()

    @property
    def client(self) -> Any:
        """The client of this process (made anew after ``fork()``)."""
        if self._pid != os.getpid():
            self._make()
        return self._client

    def script(self, source: str) -> Any:
        """The redis-py Script for the Lua ``source``: run by its SHA, loaded when Redis lacks it.
        Call it with ``client=`` (a client or a pipeline)."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    def run(self, what: str, source: str, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        """Run the Lua ``source`` with ``keys`` and ``args``, errors as :meth:`call` turns them."""
        script = self.script(source)
        return self.call(what, lambda client: script(keys=list(keys), args=list(args), client=client))

    def run_many(
        self, what: str, source: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        """Run the Lua ``source`` once per ``(keys, args)`` of ``calls``, in one pipeline: one round trip.

        The pipeline carries ``EVALSHA`` itself: a redis-py ``Script`` in a pipeline would first
        ask ``SCRIPT EXISTS`` (a second round trip per batch). When Redis lacks the script (it
        restarted, or ``SCRIPT FLUSH``), it is loaded and the batch sent once more: each script
        run here must be safe to repeat.
        """
        sha = self.script(source).sha

        def batch(client: Any) -> list[Any]:
            for attempt in range(2):
                with client.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    try:
                        return pipe.execute()
                    except redis_errors.NoScriptError:
                        if attempt:
                            raise
                        client.script_load(source)
            raise AssertionError("unreachable")

        return self.call(what, batch)

    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)``; turn Redis failures into celeriac errors naming ``what``:
        :class:`~celeriac.errors.BrokerConnectionError` for a connection refused, lost or
        timed out, :class:`~celeriac.errors.BrokerError` for the rest."""
        try:
            return fn(self.client)
        except redis_errors.TimeoutError as exc:
            self.losses += 1
            raise BrokerConnectionError(
                f"Redis at {self.location} did not answer in time ({what}): {exc}"
            ) from exc
        except (redis_errors.ConnectionError, OSError) as exc:
            self.losses += 1
            raise BrokerConnectionError(f"cannot reach Redis at {self.location} ({what}): {exc}") from exc
        except redis_errors.RedisError as exc:
            raise BrokerError(f"Redis at {self.location} refused {what}: {exc}") from exc

    def pool_stats(self) -> PoolStats:
        """The pool's counters in this process (zeros before the first command)."""
        pool = self._pool if self._pid == os.getpid() else None
        if pool is None:
            return PoolStats(self.pool_limit, 0, 0, 0, 0, 0.0, 0.0, 0)
        with pool._stats_lock:
            return PoolStats(
                limit=self.pool_limit,
                in_use=pool.in_use(),
                created=pool.created,
                acquired=pool.acquired,
                waits=pool.waits,
                wait_total_s=pool.wait_total,
                wait_max_s=pool.wait_max,
                timeouts=pool.timeouts,
            )

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._pool is not None:
                self._pool.disconnect()
            for client in self._manager.sentinels if self._manager is not None else ():
                client.close()
        self._pool = self._client = self._manager = None
        self._pid = -1
