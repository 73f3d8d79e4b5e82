"""The store contract on a real Redis, each test under a key prefix of its own."""

from __future__ import annotations

import socket
import uuid

import pytest

from celeriac.errors import BrokerConnectionError, BrokerError
from celeriac.store.base import Store
from celeriac.store.redis import RedisStore
from tests.contract.store_contract import LONG, FakeClock, StoreContract


class TestRedisStore(StoreContract):
    takes_clock = False
    cleanup_counts = False

    @pytest.fixture(autouse=True)
    def _prefix(self, redis_url):
        import redis

        self.url = redis_url
        self.prefix = f"test-{uuid.uuid4().hex[:8]}:"
        yield
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

    def make_store(self, clock: FakeClock | None) -> RedisStore:
        return RedisStore(self.url, prefix=self.prefix)

    def make_peer(self, store: Store) -> Store:
        return RedisStore(self.url, prefix=self.prefix)

    # -- what only the Redis store promises ------------------------------------------------------

    @pytest.fixture
    def r(self, redis_url):
        import redis

        client = redis.Redis.from_url(redis_url)
        yield client
        client.close()

    def test_keys_follow_the_documented_schema(self, store, k, r):
        store.add(k, b"v", LONG, "alice")
        store.set_add(k, "m", None)
        store.record_once(k, "a", LONG)
        assert r.hgetall(f"{self.prefix}v:{k}") == {b"v": b"v", b"o": b"alice"}
        assert r.zscore(f"{self.prefix}s:{k}", "m") == float("inf")
        assert r.smembers(f"{self.prefix}r:{k}") == {b"a"}
        assert 0 < r.pttl(f"{self.prefix}v:{k}") <= LONG * 1000
        assert r.pttl(f"{self.prefix}s:{k}") == -1, "a member that never expires keeps its set"

    def test_a_set_key_expires_with_its_last_member(self, store, k, r):
        store.set_add(k, "soon", 5)
        store.set_add(k, "later", 50)
        assert 45_000 < r.pttl(f"{self.prefix}s:{k}") <= 50_000
        store.set_add(k, "later", 5)
        assert 0 < r.pttl(f"{self.prefix}s:{k}") <= 5_000

    def test_connection_loss_is_a_broker_connection_error(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # nothing listens on it once the socket is closed
        store = RedisStore(f"redis://127.0.0.1:{port}/0", options={"socket_connect_timeout": 1})
        try:
            with pytest.raises(BrokerConnectionError, match="cannot reach Redis"):
                store.get("k")
            with pytest.raises(BrokerConnectionError):
                store.incr("k")
        finally:
            store.close()

    def test_a_refused_command_is_a_broker_error_not_a_connection_error(self, store, k, r):
        r.set(f"{self.prefix}v:{k}", b"a string, not the hash the store keeps")
        with pytest.raises(BrokerError) as info:
            store.get(k)
        assert not isinstance(info.value, BrokerConnectionError)
