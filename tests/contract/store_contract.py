"""The store contract: every store passes these tests; subclasses only supply the store.

Expiry is tested without fixed sleeps. Stores with an injectable clock (memory,
SQLite) get a :class:`FakeClock` that the tests move. A store on a server's clock
(Redis) is left to real time: :meth:`StoreContract.let_pass` writes a *witness*
key with the same TTL after everything the test wants expired, and polls until
the witness is gone; by then everything written before it with that TTL has
expired too.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from celeriac.errors import BrokerError
from celeriac.store.base import Store

#: A TTL that never runs out during a test.
LONG = 60.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StoreContract:
    """Subclasses define ``make_store(clock)``; each test gets fresh keys."""

    #: the store reads ``clock`` (memory, SQLite); False: it keeps the server's time (Redis)
    takes_clock = True
    #: ``cleanup`` answers how many expired entries it removed (0 where the server expires keys)
    cleanup_counts = True
    #: a TTL the tests wait out on real time (with a fake clock it is only a number)
    short = 0.2

    def make_store(self, clock: FakeClock | None) -> Store:
        raise NotImplementedError

    def make_peer(self, store: Store) -> Store:
        """Another handle on the same data (its own connection where there are connections)."""
        return store

    # -- fixtures and helpers -------------------------------------------------------------------

    @pytest.fixture
    def store(self):
        self.clock = FakeClock() if self.takes_clock else None
        store = self.make_store(self.clock)
        self._store = store
        self._peers: list[Store] = []
        yield store
        store.close()
        for peer in self._peers:
            peer.close()

    def peer(self, store: Store) -> Store:
        peer = self.make_peer(store)
        if peer is not store:
            self._peers.append(peer)
        return peer

    @pytest.fixture
    def k(self) -> str:
        return f"k-{uuid.uuid4().hex[:8]}"

    def let_pass(self, seconds: float) -> None:
        """Let ``seconds`` pass for everything the store holds now."""
        if self.clock is not None:
            self.clock.advance(seconds)
            return
        witness = f"witness-{uuid.uuid4().hex}"
        self._store.set(witness, b"", ttl=seconds)
        deadline = time.monotonic() + seconds + 10
        while self._store.get(witness) is not None:
            assert time.monotonic() < deadline, f"a {seconds} s TTL did not run out in {seconds + 10} s"
            time.sleep(0.01)

    # -- values ---------------------------------------------------------------------------------

    def test_get_set_delete(self, store, k):
        assert store.get(k) is None
        store.set(k, b"one")
        assert store.get(k) == b"one"
        store.set(k, b"\x00two\xff")
        assert store.get(k) == b"\x00two\xff"
        assert store.delete(k) is True
        assert store.get(k) is None
        assert store.delete(k) is False

    def test_keys_may_be_any_text(self, store):
        key = f"ключ:ü {uuid.uuid4().hex}"
        store.set(key, b"v")
        assert store.get(key) == b"v"
        assert store.get(key + "x") is None

    def test_a_value_expires_after_its_ttl_and_behaves_as_absent(self, store, k):
        store.set(k, b"v", ttl=self.short)
        store.set(k + "-kept", b"v", ttl=LONG)
        store.set(k + "-forever", b"v")
        if self.clock is not None:
            self.clock.advance(self.short * 0.9)
            assert store.get(k) == b"v"
        self.let_pass(self.short)
        assert store.get(k) is None
        assert store.delete(k) is False
        assert store.get(k + "-kept") == b"v"
        assert store.get(k + "-forever") == b"v"

    def test_set_replaces_the_ttl(self, store, k):
        store.set(k, b"short", ttl=self.short)
        store.set(k, b"forever")
        store.set(k + "-b", b"long", ttl=LONG)
        store.set(k + "-b", b"short", ttl=self.short)
        self.let_pass(self.short)
        assert store.get(k) == b"forever"
        assert store.get(k + "-b") is None

    def test_arguments_are_checked_before_anything_is_stored(self, store, k):
        with pytest.raises(TypeError, match="bytes"):
            store.set(k, "text")
        with pytest.raises(TypeError, match="str"):
            store.get(b"key")
        for bad in (0, -1.0, float("inf")):
            with pytest.raises(ValueError, match="positive"):
                store.set(k, b"v", ttl=bad)
        with pytest.raises(ValueError, match="needs a TTL"):
            store.add(k, b"v", None, "me")
        with pytest.raises(TypeError, match="int"):
            store.incr(k, 1.5)
        with pytest.raises(TypeError, match="number of seconds"):
            store.set_add(k, "m", "5")
        with pytest.raises(TypeError, match="bytes"):
            store.add(k, "text", LONG, "me")
        assert store.set_members(k) == set()
        assert store.get(k) is None

    # -- counters -------------------------------------------------------------------------------

    def test_incr_creates_the_key_at_zero_and_keeps_a_decimal(self, store, k):
        assert store.incr(k) == 1
        assert store.incr(k, 5) == 6
        assert store.incr(k, -2) == 4
        assert store.get(k) == b"4"
        store.set(k + "-set", b"10")
        assert store.incr(k + "-set") == 11

    def test_incr_of_something_that_is_not_an_integer_is_a_store_error(self, store, k):
        store.set(k, b"ten")
        with pytest.raises(BrokerError, match="integer"):
            store.incr(k)
        assert store.get(k) == b"ten"

    def test_incr_ttl_is_set_when_the_key_is_created_and_never_extended(self, store, k):
        assert store.incr(k, ttl=self.short) == 1
        assert store.incr(k, ttl=LONG) == 2
        assert store.incr(k + "-forever") == 1
        assert store.incr(k + "-forever", ttl=self.short) == 2
        self.let_pass(self.short)
        assert store.get(k) is None
        assert store.get(k + "-forever") == b"2"
        assert store.incr(k, ttl=LONG) == 1, "an expired counter starts again from 0"

    def test_incr_is_atomic_under_threads(self, store, k):
        stores = [store, self.peer(store)]
        threads, increments = 4, 100

        def work(n: int) -> None:
            for _ in range(increments):
                stores[n % 2].incr(k)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
        assert store.get(k) == str(threads * increments).encode()

    # -- leases ---------------------------------------------------------------------------------

    def test_add_takes_an_absent_key_once(self, store, k):
        assert store.add(k, b"a", LONG, "alice") is True
        assert store.add(k, b"b", LONG, "bob") is False
        assert store.add(k, b"a2", LONG, "alice") is False, "the owner renews instead"
        assert store.get(k) == b"a"
        assert store.owner_of(k) == "alice"
        store.set(k + "-set", b"plain")
        assert store.add(k + "-set", b"x", LONG, "alice") is False
        assert store.owner_of(k + "-set") is None
        assert store.owner_of(k + "-absent") is None

    def test_only_the_owner_renews_or_releases(self, store, k):
        store.add(k, b"v", LONG, "alice")
        assert store.renew(k, "bob", LONG) is False
        assert store.release(k, "bob") is False
        assert store.owner_of(k) == "alice"
        assert store.renew(k, "alice", LONG) is True
        assert store.release(k, "alice") is True
        assert store.get(k) is None
        assert store.release(k, "alice") is False
        assert store.renew(k, "alice", LONG) is False

    def test_renew_restarts_the_ttl(self, store, k):
        store.add(k, b"v", self.short, "alice")
        store.add(k + "-idle", b"v", self.short, "alice")
        assert store.renew(k, "alice", LONG) is True
        self.let_pass(self.short)
        assert store.owner_of(k) == "alice"
        assert store.owner_of(k + "-idle") is None

    def test_an_expired_lease_is_lost_and_can_be_taken_by_another(self, store, k):
        store.add(k, b"alice's", self.short, "alice")
        self.let_pass(self.short)
        assert store.get(k) is None
        assert store.owner_of(k) is None
        assert store.renew(k, "alice", LONG) is False
        assert store.add(k, b"bob's", LONG, "bob") is True
        assert store.release(k, "alice") is False
        assert (store.get(k), store.owner_of(k)) == (b"bob's", "bob")

    def test_set_over_a_lease_drops_its_owner(self, store, k):
        store.add(k, b"leased", LONG, "alice")
        store.set(k, b"plain")
        assert store.owner_of(k) is None
        assert store.renew(k, "alice", LONG) is False
        assert store.get(k) == b"plain"

    def test_one_of_many_concurrent_adds_wins(self, store, k):
        stores = [store, self.peer(store)]
        contenders = 8
        start = threading.Barrier(contenders)

        def contend(n: int) -> bool:
            start.wait(10)
            return stores[n % 2].add(k, str(n).encode(), LONG, f"owner-{n}")

        with ThreadPoolExecutor(contenders) as pool:
            won = list(pool.map(contend, range(contenders)))
        assert won.count(True) == 1
        winner = won.index(True)
        assert store.owner_of(k) == f"owner-{winner}"
        assert store.get(k) == str(winner).encode()

    # -- sets -----------------------------------------------------------------------------------

    def test_set_membership(self, store, k):
        assert store.set_members(k) == set()
        assert store.set_add(k, "a", LONG) is True
        assert store.set_add(k, "b", None) is True
        assert store.set_add(k, "a", LONG) is False
        assert store.set_contains(k, "a") and store.set_contains(k, "b")
        assert not store.set_contains(k, "c")
        assert store.set_members(k) == {"a", "b"}
        assert store.set_remove(k, "a") is True
        assert store.set_remove(k, "a") is False
        assert store.set_remove(k + "-absent", "a") is False
        assert store.set_members(k) == {"b"}

    def test_each_member_expires_on_its_own(self, store, k):
        store.set_add(k, "short", self.short)
        store.set_add(k, "long", LONG)
        store.set_add(k, "forever", None)
        store.set_add(k + "-all-short", "x", self.short)
        self.let_pass(self.short)
        assert store.set_members(k) == {"long", "forever"}
        assert not store.set_contains(k, "short")
        assert store.set_remove(k, "short") is False
        assert store.set_members(k + "-all-short") == set()
        assert store.set_add(k, "short", LONG) is True, "an expired member is absent"

    def test_adding_a_member_again_replaces_its_expiry(self, store, k):
        store.set_add(k, "extended", self.short)
        store.set_add(k, "extended", LONG)
        store.set_add(k, "shortened", None)
        store.set_add(k, "shortened", self.short)
        self.let_pass(self.short)
        assert store.set_members(k) == {"extended"}

    # -- records --------------------------------------------------------------------------------

    def test_record_once_counts_each_member_once(self, store, k):
        assert store.record_count(k) == 0
        assert store.record_once(k, "a", LONG) == 1
        assert store.record_once(k, "b", LONG) == 2
        assert store.record_once(k, "a", LONG) == 2, "a redelivered member does not count twice"
        assert store.record_count(k) == 2
        assert store.record_once(k + "-other", "a", LONG) == 1

    def test_a_record_expires_a_fixed_time_after_its_first_member(self, store, k):
        store.record_once(k, "a", self.short)
        assert store.record_once(k, "b", LONG) == 2
        store.record_once(k + "-forever", "a", None)
        self.let_pass(self.short)
        assert store.record_count(k) == 0
        assert store.record_once(k, "b", LONG) == 1, "an expired record starts empty"
        assert store.record_count(k + "-forever") == 1

    def test_record_once_under_threads_counts_distinct_ids(self, store, k):
        stores = [store, self.peer(store)]
        ids = [f"task-{i}" for i in range(40)]
        threads = 4

        def record(n: int) -> list[int]:
            mine = ids[:]
            random.Random(n).shuffle(mine)
            return [stores[n % 2].record_once(k, member, LONG) for member in mine]

        with ThreadPoolExecutor(threads) as pool:
            seen = [count for counts in pool.map(record, range(threads)) for count in counts]
        assert store.record_count(k) == len(ids)
        # the call that added the n-th distinct id saw n: no count skipped, none past the total
        assert set(seen) == set(range(1, len(ids) + 1))

    # -- across namespaces, cleanup, close ------------------------------------------------------

    def test_values_sets_and_records_are_separate_and_delete_removes_all(self, store, k):
        store.set(k, b"v")
        store.set_add(k, "m", LONG)
        store.record_once(k, "r", LONG)
        assert (store.get(k), store.set_members(k), store.record_count(k)) == (b"v", {"m"}, 1)
        assert store.delete(k) is True
        assert (store.get(k), store.set_members(k), store.record_count(k)) == (None, set(), 0)
        store.set_add(k, "only-a-member", LONG)
        assert store.delete(k) is True
        store.record_once(k, "only-a-record", LONG)
        assert store.delete(k) is True
        assert store.delete(k) is False
        store.set_add(k, "expired", self.short)
        self.let_pass(self.short)
        assert store.delete(k) is False

    def test_cleanup_removes_only_what_expired(self, store, k):
        store.set(k + "-v", b"v", ttl=self.short)
        store.add(k + "-lease", b"v", self.short, "alice")
        store.set_add(k + "-s", "gone", self.short)
        store.set_add(k + "-s-all-gone", "gone", self.short)
        store.record_once(k + "-r", "gone", self.short)
        store.set(k + "-kept", b"v", ttl=LONG)
        store.set_add(k + "-s", "kept", LONG)
        store.record_once(k + "-kept", "kept", None)
        self.let_pass(self.short)
        removed = store.cleanup()
        assert removed == (5 if self.cleanup_counts else 0)
        assert store.cleanup() == 0
        assert store.get(k + "-kept") == b"v"
        assert store.set_members(k + "-s") == {"kept"}
        assert store.record_count(k + "-kept") == 1

    def test_close_keeps_what_was_stored(self, store, k):
        store.set(k, b"v")
        store.record_once(k, "a", LONG)
        other = self.peer(store)
        store.close()
        assert other.get(k) == b"v"
        assert other.record_once(k, "b", LONG) == 2
