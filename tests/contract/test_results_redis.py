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
