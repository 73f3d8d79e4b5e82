"""The contract on the Redis broker, plus what only the Redis broker promises."""

from __future__ import annotations

import uuid

import pytest

from celeriac.brokers.base import BrokerOptions
from celeriac.brokers.redis import RedisBroker
from tests.contract.broker_contract import BrokerContract


class TestRedisBroker(BrokerContract):
    lower_priority_first = True
    cross_queue_fifo = False

    @pytest.fixture(autouse=True)
    def _prefix(self, redis_url):
        self.url = redis_url
        self.prefix = f"test-{uuid.uuid4().hex[:8]}:"

    def make_broker(self, options: BrokerOptions) -> RedisBroker:
        options.transport_options["global_keyprefix"] = self.prefix
        return RedisBroker(self.url, options)
