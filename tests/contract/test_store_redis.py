"""The store contract on a real Redis, each test under a key prefix of its own."""

from __future__ import annotations

import uuid

import pytest

from celeriac.store.base import Store
from celeriac.store.redis import RedisStore
from tests.contract.store_contract import FakeClock, StoreContract


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
