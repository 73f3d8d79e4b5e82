"""An in-process store (``memory://``) for tests and single-process use.

Each :class:`MemoryStore` object is its own store, as each ``MemoryBroker`` and
``MemoryResultBackend`` is its own broker and backend: threads of one process
share it by sharing the object. One lock makes every method atomic. Time comes
from ``clock`` (``time.monotonic`` unless a test passes its own), so expiry can
be tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from celeriac.errors import BrokerError
from celeriac.store.base import Store


@dataclass(slots=True)
class _Value:
    value: bytes
    expires: float | None
    owner: str | None = None


@dataclass(slots=True)
class _Record:
    expires: float | None
    members: set[str] = field(default_factory=set)


def _live(expires: float | None, now: float) -> bool:
    return expires is None or expires > now


def _deadline(ttl: float | None, now: float) -> float | None:
    return None if ttl is None else now + ttl


class MemoryStore(Store):
    """Thread-safe store in this process's memory; nothing survives the process."""

    def __init__(self, url: str = "memory://", clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, _Value] = {}
        self._sets: dict[str, dict[str, float | None]] = {}
        self._records: dict[str, _Record] = {}

    # -- lookups that treat expired entries as absent (call with the lock held) -------------

    def _value(self, key: str, now: float) -> _Value | None:
        entry = self._values.get(key)
        if entry is not None and not _live(entry.expires, now):
            del self._values[key]
            return None
        return entry

    def _record(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and not _live(record.expires, now):
            del self._records[key]
            return None
        return record

    def _members(self, name: str, now: float) -> dict[str, float | None]:
        members = self._sets.get(name, {})
        for member in [m for m, expires in members.items() if not _live(expires, now)]:
            del members[member]
        return members

    # -- values -----------------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._value(key, self.clock())
            return None if entry is None else entry.value

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        with self._lock:
            self._values[key] = _Value(value, _deadline(ttl, self.clock()))

    def _delete(self, key: str) -> bool:
        with self._lock:
            now = self.clock()
            found = self._value(key, now) is not None
            found = bool(self._members(key, now)) or found
            found = self._record(key, now) is not None or found
            self._values.pop(key, None)
            self._sets.pop(key, None)
            self._records.pop(key, None)
            return found

    def _incr(self, key: str, amount: int, ttl: float | None) -> int:
        with self._lock:
            now = self.clock()
            entry = self._value(key, now)
            if entry is None:
                entry = self._values[key] = _Value(b"0", _deadline(ttl, now))
            try:
                count = int(entry.value) + amount
            except ValueError:
                raise BrokerError(f"store key {key!r} does not hold an integer: cannot incr it") from None
            entry.value = str(count).encode()
            return count

    # -- leases -----------------------------------------------------------------------------

    def _add(self, key: str, value: bytes, ttl: float, owner: str) -> bool:
        with self._lock:
            now = self.clock()
            if self._value(key, now) is not None:
                return False
            self._values[key] = _Value(value, now + ttl, owner)
            return True

    def _renew(self, key: str, owner: str, ttl: float) -> bool:
        with self._lock:
            now = self.clock()
            entry = self._value(key, now)
            if entry is None or entry.owner != owner:
                return False
            entry.expires = now + ttl
            return True

    def _release(self, key: str, owner: str) -> bool:
        with self._lock:
            entry = self._value(key, self.clock())
            if entry is None or entry.owner != owner:
                return False
            del self._values[key]
            return True

    def _owner_of(self, key: str) -> str | None:
        with self._lock:
            entry = self._value(key, self.clock())
            return None if entry is None else entry.owner

    # -- sets -------------------------------------------------------------------------------

    def _set_add(self, name: str, member: str, ttl: float | None) -> bool:
        with self._lock:
            now = self.clock()
            members = self._members(name, now)
            new = member not in members
            members[member] = _deadline(ttl, now)
            self._sets[name] = members
            return new

    def _set_contains(self, name: str, member: str) -> bool:
        with self._lock:
            return member in self._members(name, self.clock())

    def _set_members(self, name: str) -> set[str]:
        with self._lock:
            return set(self._members(name, self.clock()))

    def _set_remove(self, name: str, member: str) -> bool:
        with self._lock:
            members = self._members(name, self.clock())
            if member not in members:
                return False
            del members[member]
            return True

    # -- records ----------------------------------------------------------------------------

    def _record_once(self, key: str, member: str, ttl: float | None) -> int:
        with self._lock:
            now = self.clock()
            record = self._record(key, now)
            if record is None:
                record = self._records[key] = _Record(_deadline(ttl, now))
            record.members.add(member)
            return len(record.members)

    def _record_count(self, key: str) -> int:
        with self._lock:
            record = self._record(key, self.clock())
            return 0 if record is None else len(record.members)

    # -- maintenance ------------------------------------------------------------------------

    def cleanup(self) -> int:
        with self._lock:
            now = self.clock()
            removed = 0
            for key in [k for k, entry in self._values.items() if not _live(entry.expires, now)]:
                del self._values[key]
                removed += 1
            for key in [k for k, record in self._records.items() if not _live(record.expires, now)]:
                del self._records[key]
                removed += 1
            for name in list(self._sets):
                before = len(self._sets[name])
                removed += before - len(self._members(name, now))
                if not self._sets[name]:
                    del self._sets[name]
            return removed
