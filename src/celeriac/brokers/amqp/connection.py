"""Connections to RabbitMQ: URL checks, errors that say what to do, a measured channel pool.

This is where py-amqp's exceptions become celeriac's (:func:`explain`, :func:`call`):
a refused or lost connection is a :class:`~celeriac.errors.BrokerConnectionError`,
a missing queue (404 NOT_FOUND) a :class:`~celeriac.errors.QueueNotFoundError`, a
conflicting declaration (406 PRECONDITION_FAILED) a
:class:`~celeriac.errors.QueueMismatchError` carrying what the server said about it,
and a refused transient queue (RabbitMQ 4.3+) a
:class:`~celeriac.errors.QueueNotAllowedError`. Nothing outside this module looks at a
py-amqp exception or at the server's text.

The client is py-amqp, Celery's own AMQP 0-9-1 client; why it was chosen is in
:mod:`celeriac.brokers.amqp.broker`. A py-amqp connection must not be shared between
threads or across ``fork()``, so:

* every pooled producer channel has its own connection (the pool is still named
  after channels: one confirm-mode channel is what a caller borrows);
* what holds connections starts afresh in a forked child (``on_fork``), dropping
  the parent's sockets without closing them (closing would end the parent's
  connection too).

The pool holds at most ``broker_pool_limit`` channels. A caller that finds all in
use waits up to ``broker_pool_timeout`` seconds, then gets a
:class:`~celeriac.errors.BrokerError` naming the setting to raise. Waits, use and
time-outs are counted for the monitor (:meth:`ChannelPool.stats`).
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from celeriac.brokers.base import PoolStats, mask_password
from celeriac.errors import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    QueueMismatchError,
    QueueNotAllowedError,
    QueueNotFoundError,
)

try:
    import amqp
    from amqp import exceptions as amqp_errors
except ImportError:  # pragma: no cover - exercised only without the extra installed
    amqp = None  # type: ignore[assignment]
    amqp_errors = None  # type: ignore[assignment]

T = TypeVar("T")

SCHEMES = ("amqp", "amqps", "pyamqp")
_EXAMPLE = "amqp://guest:guest@localhost:5672// (vhost '/') or amqps://user:secret@host:5671/myvhost"


@dataclass(frozen=True, slots=True)
class Params:
    """Where and how to connect, read from a broker URL."""

    host: str
    port: int
    userid: str
    password: str
    virtual_host: str
    ssl: bool | dict[str, Any]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def require_amqp(setting: str) -> None:
    """Fail with the install command when py-amqp is missing."""
    if amqp is None:
        raise ConfigurationError(
            f"{setting} is a RabbitMQ URL but the AMQP client is not installed: "
            "pip install 'celeriac[rabbitmq]'"
        )


def parse_url(url: str, setting: str = "broker_url") -> Params:
    """Read an ``amqp://``/``amqps://`` URL as Celery does (``//`` is the vhost ``/``).

    Errors name the setting and show a valid URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(f"{setting}={mask_password(url)!r}: not an AMQP URL; use e.g. {_EXAMPLE}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            f"{setting}={mask_password(url)!r}: the port is not a number; e.g. {_EXAMPLE}"
        ) from None
    if port == 0:
        raise ConfigurationError(f"{setting}={mask_password(url)!r}: port 0 is not valid")
    secure = parts.scheme == "amqps"
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) or "/"
    query = dict(parse_qsl(parts.query))
    ssl_option: bool | dict[str, Any] = secure
    if secure and query:
        ssl_option = _ssl_options(query, url, setting)
    return Params(
        host=parts.hostname or "localhost",
        port=port or (5671 if secure else 5672),
        userid=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        virtual_host=vhost,
        ssl=ssl_option,
    )


def _ssl_options(query: Mapping[str, str], url: str, setting: str) -> dict[str, Any]:
    known = {"ssl_ca_certs": "ca_certs", "ssl_certfile": "certfile", "ssl_keyfile": "keyfile"}
    unknown = sorted(set(query) - set(known) - {"ssl_cert_reqs"})
    if unknown:
        raise ConfigurationError(
            f"{setting}={mask_password(url)!r}: unknown URL option(s) {', '.join(unknown)}; "
            f"amqps:// takes {', '.join(sorted([*known, 'ssl_cert_reqs']))}"
        )
    options: dict[str, Any] = {known[k]: v for k, v in query.items() if k in known}
    reqs = query.get("ssl_cert_reqs")
    if reqs is not None:
        levels = {
            "CERT_NONE": ssl.CERT_NONE,
            "CERT_OPTIONAL": ssl.CERT_OPTIONAL,
            "CERT_REQUIRED": ssl.CERT_REQUIRED,
        }
        if reqs not in levels:
            raise ConfigurationError(f"{setting}: ssl_cert_reqs={reqs!r} is not one of {', '.join(levels)}")
        options["cert_reqs"] = levels[reqs]
    return options


_INEQUIVALENT = re.compile(
    r"inequivalent arg '([^']+)' for queue '([^']*)'.*received '([^']*)' but current is '([^']*)'"
)
#: The deprecated feature RabbitMQ 4.3+ denies by default: non-durable, non-exclusive queues.
_TRANSIENT_FEATURE = "transient_nonexcl_queues"


def _mismatch(text: str, what: str, where: str) -> QueueMismatchError:
    """PRECONDITION_FAILED on a declaration: which kind of thing conflicts and, for a queue
    argument the server names, the value asked for and the existing one."""
    kind = "exchange" if "for exchange" in text else "queue"
    match = _INEQUIVALENT.search(text) if kind == "queue" else None
    argument, declared, existing = (match.group(1), match.group(3), match.group(4)) if match else (None,) * 3
    return QueueMismatchError(
        f"RabbitMQ at {where} refused {what}: {text}",
        kind=kind,
        detail=text,
        argument=argument,
        declared=declared,
        existing=existing,
    )


def explain(exc: BaseException, what: str, where: str) -> BrokerError:
    """Turn a py-amqp failure into a :class:`BrokerError` that says what to do."""
    text = str(exc)
    if _TRANSIENT_FEATURE in text:  # whatever the reply code (RabbitMQ also closes the connection)
        return QueueNotAllowedError(f"RabbitMQ at {where} refused {what}: {text}")
    # ConnectionForced (a connection closed by the broker) is one of the recoverable ones
    if isinstance(exc, OSError) or (amqp_errors and isinstance(exc, amqp_errors.RecoverableConnectionError)):
        return BrokerConnectionError(
            f"cannot reach RabbitMQ at {where} ({what}): {text or type(exc).__name__}"
        )
    if amqp_errors and isinstance(exc, amqp_errors.NotFound):
        return QueueNotFoundError(f"RabbitMQ at {where} refused {what}: {text}")
    if amqp_errors and isinstance(exc, amqp_errors.PreconditionFailed):
        return _mismatch(text, what, where)
    if amqp_errors and isinstance(exc, amqp_errors.AccessRefused):
        return BrokerError(
            f"RabbitMQ at {where} refused access ({what}): {text}; check the user, password and the "
            "user's permissions on the vhost (rabbitmqctl set_permissions -p <vhost> <user> '.*' '.*' '.*')"
        )
    if amqp_errors and isinstance(exc, amqp_errors.NotAllowed | amqp_errors.InvalidPath):
        return BrokerError(
            f"RabbitMQ at {where} refused the connection ({what}): {text}; does the vhost exist "
            "(rabbitmqctl add_vhost <vhost>) and may this user use it?"
        )
    return BrokerError(f"RabbitMQ at {where} refused {what}: {text}")


class Connector:
    """Makes py-amqp connections for one URL; turns failures into clear errors."""

    def __init__(
        self,
        url: str,
        setting: str = "broker_url",
        connect_timeout: float = 4.0,
        heartbeat: float = 0,
        read_timeout: float | None = None,
    ) -> None:
        require_amqp(setting)
        self.url = url
        self.setting = setting
        self.params = parse_url(url, setting)
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.read_timeout = read_timeout
        #: the URL without its password, for logs and errors
        self.location = mask_password(url)

    def connect(self, what: str = "connecting") -> Any:
        """A new, open connection."""
        p = self.params
        connection = amqp.Connection(
            p.address,
            userid=p.userid,
            password=p.password,
            virtual_host=p.virtual_host,
            ssl=p.ssl,
            connect_timeout=self.connect_timeout,
            heartbeat=self.heartbeat,
            read_timeout=self.read_timeout,
            client_properties={"product": "celeriac", "connection_name": f"celeriac pid {os.getpid()}"},
        )
        try:
            connection.connect()
        except Exception as exc:
            with contextlib.suppress(Exception):
                connection.collect()
            raise explain(exc, what, self.location) from exc
        return connection

    def channel(self, connection: Any) -> Any:
        """A new channel that leaves bodies as bytes."""
        channel = connection.channel()
        channel.auto_decode = False
        return channel


def drop(connection: Any) -> None:
    """Close a connection, ignoring errors (it may be dead already)."""
    if connection is None:
        return
    try:
        connection.close()
    except Exception:
        with contextlib.suppress(Exception):
            connection.collect()


class ConfirmChannel:
    """A producer channel in confirm mode, on its own connection.

    :meth:`publish` sends without waiting, ``mandatory``: a message no queue takes comes
    back (``basic.return``, before its confirm) and is kept in :attr:`returned` instead
    of vanishing. :meth:`wait` blocks until the broker has confirmed every publish up to
    a sequence number (one wait for a whole batch).
    """

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.connection = connector.connect("opening a producer channel")
        try:
            self.channel = connector.channel(self.connection)
            self.channel.confirm_select()
        except Exception:
            drop(self.connection)
            raise
        self.seq = 0
        self.confirmed = 0
        self.nacked: list[int] = []
        self._late: set[int] = set()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.channel.events["basic_return"].add(self._on_return)
        #: (exchange, routing key, message) of messages no queue took
        self.returned: list[tuple[str, str, Any]] = []
        self.broken = False

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple or delivery_tag == self.confirmed + 1:
            self.confirmed = max(self.confirmed, delivery_tag)
        else:  # a single ack out of order: only a contiguous range counts as confirmed
            self._late.add(delivery_tag)
        while self._late and self.confirmed + 1 in self._late:
            self._late.discard(self.confirmed + 1)
            self.confirmed += 1

    def _on_nack(self, delivery_tag: int, multiple: bool, requeue: bool = False) -> None:
        self.nacked.append(delivery_tag)
        self._on_ack(delivery_tag, multiple)

    def _on_return(self, exc: BaseException, exchange: str, routing_key: str, message: Any) -> None:
        self.returned.append((exchange, routing_key, message))

    def publish(self, message: Any, exchange: str, routing_key: str) -> int:
        """Send one message; return its sequence number for :meth:`wait`."""
        self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=True)
        self.seq += 1
        return self.seq

    def wait(self, upto: int, timeout: float) -> None:
        """Block until every publish up to ``upto`` is confirmed; raise if one was refused."""
        deadline = time.monotonic() + timeout
        while self.confirmed < upto:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerError(
                    f"RabbitMQ at {self.connector.location} did not confirm {upto - self.confirmed} "
                    f"message(s) within {timeout:.0f} s (is it blocked by a memory or disk alarm?)"
                )
            try:
                self.connection.drain_events(timeout=min(left, 1.0))
            except TimeoutError:
                continue
        if self.nacked:
            refused, self.nacked = len(self.nacked), []
            raise BrokerError(
                f"RabbitMQ at {self.connector.location} refused {refused} message(s) (basic.nack)"
            )

    def close(self) -> None:
        drop(self.connection)


def on_fork(obj: Any, method: str) -> None:
    """Call ``obj.<method>()`` in every child forked from now on (``obj`` is held weakly)."""
    ref = weakref.ref(obj)

    def in_child() -> None:
        target = ref()
        if target is not None:
            getattr(target, method)()

    os.register_at_fork(after_in_child=in_child)


class ChannelPool:
    """At most ``limit`` confirm channels for producers in this process, with counters."""

    def __init__(self, connector: Connector, limit: int | None, timeout: float) -> None:
        self.connector = connector
        self.limit = limit
        self.timeout = timeout
        self._reset()
        on_fork(self, "_reset")  # a forked child starts with no channels: the parent's are not its own

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[ConfirmChannel] = []
        self._in_use = 0
        self.created = self.acquired = self.waits = self.timeouts = 0
        self.wait_total = self.wait_max = 0.0

    @contextlib.contextmanager
    def channel(self) -> Iterator[ConfirmChannel]:
        """Borrow a channel; a channel that failed is closed instead of returned."""
        started = time.perf_counter()
        with self._cond:
            while not self._idle and self.limit and self._in_use >= self.limit:
                left = self.timeout - (time.perf_counter() - started)
                if left <= 0:
                    self.timeouts += 1
                    raise BrokerError(
                        f"all {self.limit} pooled RabbitMQ channels stayed in use for {self.timeout} s: "
                        "raise broker_pool_limit, or broker_pool_timeout if callers may wait longer"
                    )
                self._cond.wait(left)
            waited = time.perf_counter() - started
            self.acquired += 1
            if waited > 0.001:
                self.waits += 1
            self.wait_total += waited
            self.wait_max = max(self.wait_max, waited)
            pooled = self._idle.pop() if self._idle else None
            self._in_use += 1
        try:
            if pooled is None:
                pooled = ConfirmChannel(self.connector)
                self.created += 1
            yield pooled
        except BaseException:
            if pooled is not None:
                pooled.broken = True
            raise
        finally:
            with self._cond:
                self._in_use -= 1
                if pooled is not None and not pooled.broken:
                    self._idle.append(pooled)
                elif pooled is not None:
                    pooled.close()
                self._cond.notify()

    def stats(self) -> PoolStats:
        with self._cond:
            return PoolStats(
                limit=self.limit,
                in_use=self._in_use,
                created=self.created,
                acquired=self.acquired,
                waits=self.waits,
                wait_total_s=self.wait_total,
                wait_max_s=self.wait_max,
                timeouts=self.timeouts,
            )

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.close()


def call(what: str, where: str, fn: Callable[[], T]) -> T:
    """Run ``fn``; turn py-amqp and socket failures into :class:`BrokerError`."""
    try:
        return fn()
    except BrokerError:
        raise
    except OSError as exc:  # TimeoutError included
        raise explain(exc, what, where) from exc
    except Exception as exc:
        if amqp_errors is not None and isinstance(exc, amqp_errors.AMQPError):
            raise explain(exc, what, where) from exc
        raise


#: :meth:`AdminChannel.call`'s "no default": let a missing queue's QueueNotFoundError through.
_RAISE: Any = object()


class AdminChannel:
    """This process's connection and channel for declarations and passive reads.

    Calls are serialised (a py-amqp channel is not thread-safe). A failed call closes
    the connection (a channel error closes an AMQP channel anyway), so the next call
    starts clean; a forked child starts without one.
    """

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._reset()
        on_fork(self, "_reset")

    def _reset(self) -> None:
        """Forget the connection without closing it (in a forked child it is the parent's)."""
        self._lock = threading.RLock()
        self._open: tuple[Any, Any] | None = None  # (connection, channel)

    def _channel(self) -> Any:
        if self._open is None:
            connection = self.connector.connect("opening a channel for declarations")
            try:
                channel = self.connector.channel(connection)
            except Exception as exc:
                drop(connection)
                raise explain(exc, "opening a channel", self.connector.location) from exc
            self._open = (connection, channel)
        return self._open[1]

    def call(self, what: str, fn: Callable[[Any], T], missing: Any = _RAISE) -> T:
        """Run ``fn(channel)``. ``missing``: the answer when the queue ``fn`` touches does
        not exist (else :class:`~celeriac.errors.QueueNotFoundError` is raised)."""
        with self._lock:
            try:
                return call(what, self.connector.location, lambda: fn(self._channel()))
            except BrokerError as exc:
                self.close()
                if isinstance(exc, QueueNotFoundError) and missing is not _RAISE:
                    return missing
                raise

    def counts(self, queue: str) -> tuple[int, int]:
        """Ready messages and consumers of ``queue``, as the server counts them (0, 0 if
        there is no such queue)."""

        def passive(channel: Any) -> tuple[int, int]:
            ok = channel.queue_declare(queue, passive=True)
            return int(ok.message_count), int(ok.consumer_count)

        return self.call(f"reading the length of {queue!r}", passive, (0, 0))

    def purge(self, queue: str) -> int:
        """Delete the ready messages of ``queue``; how many (0 if there is no such queue)."""

        def purge(channel: Any) -> int:
            return int(channel.queue_purge(queue) or 0)

        return self.call(f"purging {queue!r}", purge, 0)

    def close(self) -> None:
        opened, self._open = self._open, None
        if opened is not None:
            drop(opened[0])
