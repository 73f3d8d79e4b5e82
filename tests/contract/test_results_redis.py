"""The result-backend contract on a real Redis (Celery's key layout; task ids are fresh uuids,
and every result a test writes is forgotten after it)."""

from __future__ import annotations

import pytest

from celeriac.results.redis import RedisResultBackend
from tests.contract.results_contract import ResultBackendContract


class TestRedisResultBackend(ResultBackendContract):
    @pytest.fixture(autouse=True)
    def _url(self, redis_url):
        self.url = redis_url

    def make_backend(self, expires: float | None) -> RedisResultBackend:
        return RedisResultBackend(self.url, expires=expires)


def _calls(client, command: str) -> int:
    return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def test_a_batch_of_results_is_one_round_trip_and_survives_a_script_flush(private_redis):
    """The batch goes as EVALSHA in one pipeline, with no SCRIPT EXISTS before it; a Redis that
    lost its scripts (restart, SCRIPT FLUSH) gets the script loaded and the batch again."""
    import redis

    from celeriac.results.base import PendingResult
    from celeriac.states import SUCCESS

    client = redis.Redis.from_url(private_redis.url)
    backend = RedisResultBackend(private_redis.url, expires=60)
    try:
        backend.store_many([PendingResult(f"warm-{i}", SUCCESS, i) for i in range(3)])
        client.config_resetstat()
        backend.store_many([PendingResult(f"one-{i}", SUCCESS, i) for i in range(100)])
        assert _calls(client, "script|exists") == 0
        assert _calls(client, "evalsha") == 100
        client.script_flush()
        backend.store_many([PendingResult(f"two-{i}", SUCCESS, i * 2) for i in range(5)])
        assert [backend.get(f"two-{i}").result for i in range(5)] == [0, 2, 4, 6, 8]
        assert _calls(client, "script|load") == 1
    finally:
        backend.close()
        client.close()
