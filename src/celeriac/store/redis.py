"""Redis store: one Redis key per store key, every primitive one command or one Lua script.

Connection String: ``redis://[:password@]host:6379/0``, ``rediss://...`` (TLS),
``unix:///path/redis.sock?db=0`` or ``sentinel://host:26379/0;...`` (Redis
Sentinel, with ``sentinel={'master_name': ...}``) — the broker's or result
backend's own URL; the connection pool is
:class:`~celeriac.brokers.redis.connection.RedisConnector`'s.

Key schema (``P`` is the key prefix, ``celeriac.store:`` unless configured, so
nothing here can collide with kombu's or Celery's keys):

===============  ======  ========================================================================
key              type    contents
===============  ======  ========================================================================
``Pv:<key>``     hash    field ``v``: the value (``incr`` keeps an ASCII decimal there, via
                         ``HINCRBY``); field ``o``: the lease owner, absent when the value was
                         ``set``. The key's own TTL (``PEXPIRE``) is the value's expiry.
``Ps:<name>``    zset    member -> the time it expires, in server milliseconds (``inf``: never);
                         expired members are dropped on the next ``set_add``, and the key itself
                         expires with its last member (``PEXPIREAT`` to the highest score)
``Pr:<key>``     set     the members recorded by ``record_once``; the key's TTL is set when the
                         first member creates it
===============  ======  ========================================================================

Atomicity: reads are single commands (``HGET``, ``SCARD``) or read-only scripts
that compare with the server's clock; every read-modify-write is one Lua script
(``add``: ``EXISTS`` + ``HSET`` + ``PEXPIRE``; ``renew`` / ``release``: compare the
owner, then ``PEXPIRE`` / ``DEL``; ``record_once``: ``SADD`` + ``SCARD`` + ``PEXPIRE``
when new). Expiry uses the server's clock throughout (key TTLs and ``TIME`` inside
scripts), never the clients'. TTLs are rounded up to whole milliseconds.

``delete`` touches three keys in one script, so all of a store's keys must live
on one Redis server (Redis Cluster is not supported, as for the broker).
Connection loss and timeouts raise :class:`~celeriac.errors.BrokerConnectionError`;
a refused command raises :class:`~celeriac.errors.BrokerError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from celeriac.brokers.redis.connection import RedisConnector
from celeriac.store.base import Store

T = TypeVar("T")

DEFAULT_PREFIX = "celeriac.store:"

_NOW = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

#: KEYS: value key. ARGV: value, ttl_ms or ''.
SET = r"""
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1])
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

#: KEYS: value, set and record keys of one name.
DELETE = (
    _NOW
    + r"""
local found = redis.call('DEL', KEYS[1], KEYS[3]) > 0
local live = redis.call('ZCOUNT', KEYS[2], '(' .. now_ms(), '+inf') > 0
redis.call('DEL', KEYS[2])
if found or live then return 1 end
return 0
"""
)

#: KEYS: value key. ARGV: amount, ttl_ms or ''.
INCR = r"""
local created = redis.call('EXISTS', KEYS[1]) == 0
local n = redis.call('HINCRBY', KEYS[1], 'v', ARGV[1])
if created and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
"""

#: KEYS: value key. ARGV: value, ttl_ms, owner.
ADD = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'o', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

#: KEYS: value key. ARGV: owner, ttl_ms.
RENEW = r"""
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

#: KEYS: value key. ARGV: owner.
RELEASE = r"""
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

#: KEYS: set key. ARGV: member, ttl_ms or ''. The key expires with its last member.
SET_ADD = (
    _NOW
    + r"""
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local score = 'inf'
if ARGV[2] ~= '' then score = now + tonumber(ARGV[2]) end
local new = redis.call('ZADD', KEYS[1], score, ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] == 'inf' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIREAT', KEYS[1], top[2])
end
return new
"""
)

#: KEYS: set key. ARGV: member.
SET_CONTAINS = (
    _NOW
    + r"""
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
if score == 'inf' or tonumber(score) > now_ms() then return 1 end
return 0
"""
)

#: KEYS: set key.
SET_MEMBERS = (
    _NOW
    + r"""
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now_ms(), '+inf')
"""
)

#: KEYS: set key. ARGV: member.
SET_REMOVE = (
    _NOW
    + r"""
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if score == 'inf' or tonumber(score) > now_ms() then return 1 end
return 0
"""
)

#: KEYS: record key. ARGV: member, ttl_ms or ''.
RECORD_ONCE = r"""
local created = redis.call('EXISTS', KEYS[1]) == 0
redis.call('SADD', KEYS[1], ARGV[1])
if created and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SCARD', KEYS[1])
"""

_SCRIPTS = {
    "SET": SET,
    "DELETE": DELETE,
    "INCR": INCR,
    "ADD": ADD,
    "RENEW": RENEW,
    "RELEASE": RELEASE,
    "SET_ADD": SET_ADD,
    "SET_CONTAINS": SET_CONTAINS,
    "SET_MEMBERS": SET_MEMBERS,
    "SET_REMOVE": SET_REMOVE,
    "RECORD_ONCE": RECORD_ONCE,
}


def _ms(ttl: float | None) -> int | str:
    """A TTL in whole milliseconds, rounded up; '' (no expiry) for None."""
    return "" if ttl is None else max(1, math.ceil(ttl * 1000))


class RedisStore(Store):
    """The store on a Redis server, shared by every process that reaches it."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        setting: str = "result_backend",
        pool_limit: int | None = 10,
        pool_timeout: float = 10.0,
        options: Mapping[str, Any] | None = None,
        sentinel: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        socket = {"socket_connect_timeout": 4.0, "socket_keepalive": True, **dict(options or {})}
        self.conn = RedisConnector(url, setting, pool_limit, pool_timeout, socket, sentinel)

    # -- plumbing ---------------------------------------------------------------------------

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any], what: str) -> Any:
        return self.conn.run(what, _SCRIPTS[name], keys, args)

    def _value_key(self, key: str) -> str:
        return f"{self.prefix}v:{key}"

    def _set_key(self, name: str) -> str:
        return f"{self.prefix}s:{name}"

    def _record_key(self, key: str) -> str:
        return f"{self.prefix}r:{key}"

    # -- values -----------------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        k = self._value_key(key)
        return self.conn.call(f"reading {k}", lambda client: client.hget(k, "v"))

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        k = self._value_key(key)
        self._run("SET", [k], [value, _ms(ttl)], f"setting {k}")

    def _delete(self, key: str) -> bool:
        keys = [self._value_key(key), self._set_key(key), self._record_key(key)]
        return bool(self._run("DELETE", keys, [], f"deleting {key!r}"))

    def _incr(self, key: str, amount: int, ttl: float | None) -> int:
        k = self._value_key(key)
        return int(self._run("INCR", [k], [amount, _ms(ttl)], f"incrementing {k}"))

    # -- leases -----------------------------------------------------------------------------

    def _add(self, key: str, value: bytes, ttl: float, owner: str) -> bool:
        k = self._value_key(key)
        return bool(self._run("ADD", [k], [value, _ms(ttl), owner], f"adding {k}"))

    def _renew(self, key: str, owner: str, ttl: float) -> bool:
        k = self._value_key(key)
        return bool(self._run("RENEW", [k], [owner, _ms(ttl)], f"renewing {k}"))

    def _release(self, key: str, owner: str) -> bool:
        k = self._value_key(key)
        return bool(self._run("RELEASE", [k], [owner], f"releasing {k}"))

    def _owner_of(self, key: str) -> str | None:
        k = self._value_key(key)
        owner = self.conn.call(f"reading the owner of {k}", lambda client: client.hget(k, "o"))
        return None if owner is None else bytes(owner).decode()

    # -- sets -------------------------------------------------------------------------------

    def _set_add(self, name: str, member: str, ttl: float | None) -> bool:
        k = self._set_key(name)
        return bool(self._run("SET_ADD", [k], [member, _ms(ttl)], f"adding to {k}"))

    def _set_contains(self, name: str, member: str) -> bool:
        k = self._set_key(name)
        return bool(self._run("SET_CONTAINS", [k], [member], f"reading {k}"))

    def _set_members(self, name: str) -> set[str]:
        k = self._set_key(name)
        return {bytes(m).decode() for m in self._run("SET_MEMBERS", [k], [], f"reading {k}")}

    def _set_remove(self, name: str, member: str) -> bool:
        k = self._set_key(name)
        return bool(self._run("SET_REMOVE", [k], [member], f"removing from {k}"))

    # -- records ----------------------------------------------------------------------------

    def _record_once(self, key: str, member: str, ttl: float | None) -> int:
        k = self._record_key(key)
        return int(self._run("RECORD_ONCE", [k], [member, _ms(ttl)], f"recording in {k}"))

    def _record_count(self, key: str) -> int:
        k = self._record_key(key)
        return int(self.conn.call(f"counting {k}", lambda client: client.scard(k)))

    # -- maintenance ------------------------------------------------------------------------

    def cleanup(self) -> int:
        """Nothing to remove: Redis expires the keys itself, and ``set_add`` trims sets."""
        return 0

    def close(self) -> None:
        self.conn.close()
