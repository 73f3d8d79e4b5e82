"""Redis behind Sentinel: ``sentinel://`` URLs and the options that go with them.

Connection String (the form kombu and Celery read)::

    sentinel://[[user]:password@]host:port[/db];sentinel://host:port[/db];...

One part per sentinel, joined by ``;``. The user, password and db of the first
part are those of the Redis master (and of its replicas), as in kombu and
Celery; a later part may repeat them but not contradict them. Each part needs
its port (sentinels usually listen on 26379): Celery's result backend and
kombu's broker assume different ports when it is left out, so celeriac asks.

Options (``broker_transport_options`` for the broker and a store on the
broker's URL, ``result_backend_transport_options`` for the result backend and
a store on its URL):

* ``master_name`` (required): the name the sentinels monitor the master under,
  the ``<name>`` of their ``sentinel monitor <name> <host> <port> <quorum>`` line;
* ``sentinel_kwargs``: connection options for the sentinels themselves, e.g.
  ``{'password': ...}`` when the sentinels require one (``requirepass`` in
  ``sentinel.conf``); the socket options of the master's connections apply to
  the sentinels too unless given here;
* ``min_other_sentinels`` (0): a sentinel that sees fewer peers than this is not
  believed.

TLS is not supported: neither kombu nor Celery knows a ``sentinels://`` scheme
(they take TLS from ``broker_use_ssl``, which celeriac refuses), and such a URL
is an error that says what to use instead.

The client asks the sentinels for the master's address whenever it opens a
connection, so after a failover every new connection goes to the new master;
connections to the old one are dropped as they fail (see
:class:`~celeriac.brokers.redis.connection.RedisConnector`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from celeriac.brokers.base import mask_password
from celeriac.errors import ConfigurationError

SCHEME = "sentinel"
#: The transport options a ``sentinel://`` URL reads (kombu's and Celery's names).
OPTION_NAMES = frozenset({"master_name", "sentinel_kwargs", "min_other_sentinels"})
#: Where the transport options of a URL setting are set.
OPTIONS_SETTING = {
    "broker_url": "broker_transport_options",
    "result_backend": "result_backend_transport_options",
}
EXAMPLE = "sentinel://:password@10.0.0.1:26379/0;sentinel://10.0.0.2:26379/0;sentinel://10.0.0.3:26379/0"


#: Why ``sentinels://`` is refused, and what to use.
NO_TLS = (
    "TLS to Redis Sentinel is not supported (kombu and Celery have no sentinels:// either); "
    "use sentinel:// on a network you trust, or rediss:// to a single Redis server"
)


def refuse_tls(url: str, setting: str) -> None:
    """Raise :class:`~celeriac.errors.ConfigurationError` for a ``sentinels://`` URL, saying
    what to use instead (nothing happens for any other URL)."""
    if url.split("://", 1)[0].lower() == "sentinels":
        raise ConfigurationError(f"{setting}={mask_password(url)!r}: {NO_TLS}")


def is_sentinel(url: str) -> bool:
    """True for a ``sentinel://`` URL (or a ``;`` list of them)."""
    return url.split("://", 1)[0].lower() == SCHEME


def options_setting(setting: str) -> str:
    """The setting that holds the transport options for the URL in ``setting``."""
    return OPTIONS_SETTING.get(setting, f"the transport options of {setting}")


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed ``sentinel://`` URL: the sentinels, and the master's db and credentials."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class SentinelOptions:
    """The transport options of a ``sentinel://`` URL, checked."""

    master_name: str
    sentinel_kwargs: Mapping[str, Any] = field(default_factory=dict)
    min_other_sentinels: int = 0


def _part(text: str) -> tuple[SplitResult | None, str]:
    """One ``;`` part split, or None and what is wrong with it."""
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        return None, f"not a URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme == "sentinels":
        return None, NO_TLS
    if scheme != SCHEME:
        return None, "not sentinel://host:port"
    try:
        port = parts.port
    except ValueError:
        return None, "the port is not a number"
    if not parts.hostname:
        return None, "no host"
    if not port:
        return None, "no port (sentinels usually listen on 26379)"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return None, f"the db after the address must be a number (got {db!r})"
    if parts.query or parts.fragment:
        return None, "no query string or fragment is read: options go in the transport options"
    return parts, ""


def parse_url(url: str, setting: str = "broker_url") -> SentinelURL:
    """Read a ``sentinel://`` URL; :class:`~celeriac.errors.ConfigurationError` names every
    bad part and shows a valid URL."""
    texts = [text.strip() for text in url.split(";")]
    texts = [text for text in texts if text]  # a trailing ';' is harmless
    problems: list[str] = []
    parsed: list[SplitResult] = []
    for text in texts:
        parts, problem = _part(text)
        if parts is None:
            problems.append(f"{mask_password(text)!r}: {problem}")
        else:
            parsed.append(parts)
    if not texts:
        problems.append("no sentinel is named")
    if problems:
        raise ConfigurationError(
            f"{setting}={mask_password(url)!r} is not a Redis Sentinel URL: {'; '.join(problems)}. "
            f"Name every sentinel as sentinel://host:port, joined by ';', e.g. {EXAMPLE}"
        )
    first = parsed[0]
    db = int(first.path.strip("/") or 0)
    for parts in parsed[1:]:
        other = parts.path.strip("/")
        if other and int(other) != db:
            raise ConfigurationError(
                f"{setting}={mask_password(url)!r}: the parts name different dbs ({db} and {int(other)}); "
                "the db is the master's, the same through every sentinel: give it once, on the first part"
            )
        if parts.password is not None and parts.password != first.password:
            raise ConfigurationError(
                f"{setting}={mask_password(url)!r}: only the first part's password is used (it is the "
                "Redis master's); put it there and remove it from the others. The sentinels' own "
                f"password goes in {options_setting(setting)}={{'sentinel_kwargs': {{'password': ...}}}}"
            )
    return SentinelURL(
        sentinels=tuple((str(p.hostname), int(p.port or 0)) for p in parsed),
        db=db,
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password is not None else None,
    )


def read_options(transport: Mapping[str, Any], setting: str = "broker_url") -> SentinelOptions:
    """The Sentinel options out of ``transport`` (other names are not looked at).

    A missing ``master_name`` or a value of the wrong type is a
    :class:`~celeriac.errors.ConfigurationError` naming the setting to fix.
    """
    where = options_setting(setting)
    name = transport.get("master_name")
    if name is None:
        raise ConfigurationError(
            f"{setting} is a Redis Sentinel URL but no master name is set: add "
            f"{where}={{'master_name': 'mymaster'}}, the name in the sentinels' "
            "'sentinel monitor <name> <host> <port> <quorum>' line"
        )
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where} master_name={name!r}: expected the master's name, a string")
    kwargs = transport.get("sentinel_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigurationError(
            f"{where} sentinel_kwargs={kwargs!r}: expected a dict of connection options for the "
            "sentinels, e.g. {'password': ...}"
        )
    least = transport.get("min_other_sentinels", 0)
    if isinstance(least, bool) or not isinstance(least, int) or least < 0:
        raise ConfigurationError(f"{where} min_other_sentinels={least!r}: expected an integer >= 0")
    return SentinelOptions(name, dict(kwargs), least)
