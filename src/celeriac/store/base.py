"""The store contract: a few atomic key-value primitives every coordination feature builds on.

Chord counters, revoked task ids, rate-limit buckets, beat's leader lease, beat's
last-run times and unique keys all need the same handful of operations. Each
backend (memory, SQLite, Redis) implements them once; the features above never
talk to a driver.

Data model
----------
Keys and member names are ``str``; values are ``bytes`` (callers serialise).
There are three separate namespaces, so one name may be used in each without
clashing:

* **values** — ``get`` / ``set`` / ``delete`` / ``incr`` and the lease methods
  ``add`` / ``renew`` / ``release`` / ``owner_of``. A value may have an *owner*
  (the one who ``add``-ed it as a lease); ``set`` and ``incr`` never change the
  owner except that ``set`` replaces the whole entry (value, TTL, no owner).
  ``incr`` keeps the count as an ASCII decimal (``get`` after ``incr(k, 5)`` on a
  fresh key answers ``b"5"``), as Redis does.
* **sets** — ``set_add`` / ``set_contains`` / ``set_members`` / ``set_remove``:
  members (``str``) that each expire on their own.
* **records** — ``record_once`` / ``record_count``: a set of members with one
  expiry for the whole record, made for counting distinct ids (chord parts).

``delete(key)`` removes ``key`` from all three namespaces.

Time
----
TTLs are seconds (``float``); ``None`` means never expire where a method allows
it. A TTL must be positive. Anything past its expiry behaves as absent in every
method, whether or not the backend has physically removed it yet (``cleanup``
does that where the backend does not do it itself).

* ``set`` sets the TTL of the value each time (``None`` removes any expiry).
* ``incr`` and ``record_once`` apply their TTL only when they *create* the key;
  later calls never extend it (a fixed rate-limit window stays fixed; a chord
  record expires a fixed time after its first part).
* ``set_add`` gives each member its own expiry; adding a member again replaces
  its expiry with the new one.
* ``renew`` restarts a lease's TTL from now.

Atomicity
---------
Every method is one atomic step on the backend (one transaction in SQLite, one
command or script in Redis, one lock in memory): concurrent callers in any
number of threads and processes never see half of it, and read-modify-write
methods (``incr``, ``add``, ``renew``, ``release``, ``record_once``) never lose
an update.

Errors
------
The store is at the brokers' layer and shares their connections and files, so
it raises their errors: :class:`~celeriac.errors.BrokerConnectionError` when the
server cannot be reached (retrying may help), :class:`~celeriac.errors.BrokerError`
for any other failure, including ``incr`` on a value that is not an integer.
Wrong argument types or a TTL that is not positive raise ``TypeError`` /
``ValueError`` before anything is sent.

Method summary:

=====================  ===============================================================
``get``                the value of a key, or None
``set``                store a value, with an optional TTL; drops any owner
``delete``             remove a key from every namespace; True if something was there
``incr``               add to an integer value atomically, creating it at 0
``add``                add-if-absent with a TTL and an owner: take a lease
``renew``              the owner extends its lease; False if it lost it
``release``            the owner gives its lease up; False if it was not the owner
``owner_of``           who holds a key's lease, or None
``set_add``            add a member to a set, expiring after its own TTL
``set_contains``       is an unexpired member in the set
``set_members``        every unexpired member of a set
``set_remove``         remove a member from a set
``record_once``        record a member once and answer how many distinct members
``record_count``       how many distinct members a record holds
``cleanup``            physically remove what has expired; how many entries
``close``              release connections
=====================  ===============================================================
"""

from __future__ import annotations

import abc
import math


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a store {what} must be str, not {type(name).__name__}")
    return name


def _check_ttl(ttl: float | None, optional: bool) -> float | None:
    if ttl is None:
        if optional:
            return None
        raise ValueError("this store method needs a TTL in seconds, not None")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"a TTL is a number of seconds, not {type(ttl).__name__}")
    if not ttl > 0 or math.isinf(ttl):
        raise ValueError(
            f"a TTL must be a positive, finite number of seconds (got {ttl!r}); use None for none"
        )
    return float(ttl)


class Store(abc.ABC):
    """Key-value primitives with expiry, counters, leases, sets and once-only records.

    The public methods check their arguments and delegate to the ``_``-prefixed
    abstract methods a backend implements; the backend may rely on the checks.
    """

    #: The URL the store was made from (with any password as given).
    url: str = ""

    # -- values -----------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None if it is absent or expired. A read: atomic by nature."""
        return self._get(_check_name("key", key))

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing any value, owner and TTL.

        With ``ttl`` the key expires that many seconds from now; with None it
        never expires. Atomic: readers see the old entry or the new one.
        """
        if not isinstance(value, bytes):
            raise TypeError(f"store values are bytes (serialise first), not {type(value).__name__}")
        self._set(_check_name("key", key), value, _check_ttl(ttl, optional=True))

    def delete(self, key: str) -> bool:
        """Remove ``key`` as a value (leased or not), a set and a record.

        True if any of them existed unexpired. Atomic across the three namespaces.
        """
        return self._delete(_check_name("key", key))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer under ``key`` and answer the new value.

        An absent (or expired) key is created at 0 first, and then, only then,
        gets ``ttl``; incrementing an existing key keeps its expiry. Atomic: N
        concurrent increments of 1 always add N. A value that is not an ASCII
        integer raises :class:`~celeriac.errors.BrokerError`.
        """
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"incr adds an int, not {type(amount).__name__}")
        return self._incr(_check_name("key", key), amount, _check_ttl(ttl, optional=True))

    # -- leases -----------------------------------------------------------------------------

    def add(self, key: str, value: bytes, ttl: float, owner: str) -> bool:
        """Store ``value`` under ``key`` owned by ``owner`` for ``ttl`` seconds, only if absent.

        True if this call took the key; False if it exists unexpired (whoever owns
        it, including ``owner`` itself: use ``renew`` to extend). Atomic: of any
        number of concurrent ``add`` calls on an absent key exactly one wins. An
        expired lease is absent, so another owner can take it.
        """
        if not isinstance(value, bytes):
            raise TypeError(f"store values are bytes (serialise first), not {type(value).__name__}")
        checked = _check_ttl(ttl, optional=False)
        assert checked is not None
        return self._add(_check_name("key", key), value, checked, _check_name("owner", owner))

    def renew(self, key: str, owner: str, ttl: float) -> bool:
        """If ``owner`` holds ``key``, make it expire ``ttl`` seconds from now and answer True.

        False if the key is absent, expired or held by someone else (the lease
        was lost: stop doing what it guarded). Atomic check-and-extend.
        """
        checked = _check_ttl(ttl, optional=False)
        assert checked is not None
        return self._renew(_check_name("key", key), _check_name("owner", owner), checked)

    def release(self, key: str, owner: str) -> bool:
        """If ``owner`` holds ``key``, delete it and answer True; otherwise change nothing.

        Atomic check-and-delete: a lease that expired and was taken by another
        owner is never released by the old one.
        """
        return self._release(_check_name("key", key), _check_name("owner", owner))

    def owner_of(self, key: str) -> str | None:
        """The owner of the unexpired lease on ``key``; None if absent, expired or set without one."""
        return self._owner_of(_check_name("key", key))

    # -- sets -------------------------------------------------------------------------------

    def set_add(self, name: str, member: str, ttl: float | None) -> bool:
        """Add ``member`` to set ``name``; it expires ``ttl`` seconds from now (None: never).

        True if the member was not in the set (or had expired). Adding a present
        member replaces its expiry. Atomic.
        """
        return self._set_add(
            _check_name("set name", name), _check_name("member", member), _check_ttl(ttl, optional=True)
        )

    def set_contains(self, name: str, member: str) -> bool:
        """True if ``member`` is in set ``name`` and has not expired."""
        return self._set_contains(_check_name("set name", name), _check_name("member", member))

    def set_members(self, name: str) -> set[str]:
        """Every unexpired member of set ``name`` (an empty set if there is none). One snapshot."""
        return self._set_members(_check_name("set name", name))

    def set_remove(self, name: str, member: str) -> bool:
        """Remove ``member`` from set ``name``; True if it was there unexpired. Atomic."""
        return self._set_remove(_check_name("set name", name), _check_name("member", member))

    # -- records ----------------------------------------------------------------------------

    def record_once(self, key: str, member: str, ttl: float | None) -> int:
        """Record ``member`` under ``key`` and answer how many distinct members the record holds.

        Recording a member again does not count it again, so a redelivered chord
        part is never counted twice. A new record expires ``ttl`` seconds after
        its first member (None: never); later members do not extend it. Atomic:
        concurrent callers recording overlapping ids end at the number of distinct
        ids, and the calls that add a new member each see a different count.

        A repeated member answers the current count too, so "the count reached N"
        may be seen more than once: a step that must happen once (firing a chord
        body) takes its own ``add`` lease or key.
        """
        return self._record_once(
            _check_name("key", key), _check_name("member", member), _check_ttl(ttl, optional=True)
        )

    def record_count(self, key: str) -> int:
        """How many distinct members the unexpired record ``key`` holds (0 if none)."""
        return self._record_count(_check_name("key", key))

    # -- maintenance ------------------------------------------------------------------------

    @abc.abstractmethod
    def cleanup(self) -> int:
        """Physically remove expired entries; answer how many were removed.

        Expired entries already behave as absent; this only reclaims space. A
        backend whose server expires keys by itself (Redis) answers 0.
        """

    def close(self) -> None:
        """Release this process's connections. The store may not be used afterwards."""

    # -- what a backend implements ----------------------------------------------------------

    @abc.abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def _set(self, key: str, value: bytes, ttl: float | None) -> None: ...

    @abc.abstractmethod
    def _delete(self, key: str) -> bool: ...

    @abc.abstractmethod
    def _incr(self, key: str, amount: int, ttl: float | None) -> int: ...

    @abc.abstractmethod
    def _add(self, key: str, value: bytes, ttl: float, owner: str) -> bool: ...

    @abc.abstractmethod
    def _renew(self, key: str, owner: str, ttl: float) -> bool: ...

    @abc.abstractmethod
    def _release(self, key: str, owner: str) -> bool: ...

    @abc.abstractmethod
    def _owner_of(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def _set_add(self, name: str, member: str, ttl: float | None) -> bool: ...

    @abc.abstractmethod
    def _set_contains(self, name: str, member: str) -> bool: ...

    @abc.abstractmethod
    def _set_members(self, name: str) -> set[str]: ...

    @abc.abstractmethod
    def _set_remove(self, name: str, member: str) -> bool: ...

    @abc.abstractmethod
    def _record_once(self, key: str, member: str, ttl: float | None) -> int: ...

    @abc.abstractmethod
    def _record_count(self, key: str) -> int: ...
