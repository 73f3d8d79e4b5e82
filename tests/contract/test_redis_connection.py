"""Connections to a real Redis: the measured pool, publish retries, clear errors."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from celeriac.brokers.base import BrokerOptions
from celeriac.brokers.redis.broker import RedisBroker
from celeriac.brokers.redis.connection import RedisConnector, where
from celeriac.errors import BrokerConnectionError, BrokerError
from tests.contract.broker_contract import out
from tests.redis_server import kill_when_blocked


def test_pool_limit_is_enforced_with_an_error_naming_the_setting(redis_url):
    connector = RedisConnector(redis_url, pool_limit=1, pool_timeout=0.2)
    pool = connector.client.connection_pool
    held = pool.get_connection()
    try:
        assert connector.pool_stats().in_use == 1
        with pytest.raises(BrokerError, match="raise broker_pool_limit"):
            connector.call("ping", lambda c: c.ping())
    finally:
        pool.release(held)
    assert connector.call("ping", lambda c: c.ping()) is True
    stats = connector.pool_stats()
    assert (stats.limit, stats.in_use, stats.created, stats.timeouts) == (1, 0, 1, 1)
    assert stats.acquired == 2
    connector.close()


def test_pool_measures_how_long_callers_wait(redis_url):
    connector = RedisConnector(redis_url, pool_limit=1, pool_timeout=5)
    connector.call("ping", lambda c: c.ping())  # the one connection is made and connected
    pool = connector.client.connection_pool
    held = pool.get_connection()
    before = connector.pool_stats().waits
    released = threading.Event()

    def release_soon() -> None:
        released.wait(0.15)
        pool.release(held)

    thread = threading.Thread(target=release_soon)
    thread.start()
    assert connector.call("ping", lambda c: c.ping()) is True
    thread.join()
    stats = connector.pool_stats()
    assert stats.waits - before == 1
    assert 0.1 < stats.wait_max_s < 2
    connector.close()


def test_unreachable_redis_is_a_broker_error_naming_the_address():
    connector = RedisConnector("redis://:hunter2@127.0.0.1:1/0", options={"socket_connect_timeout": 0.5})
    with pytest.raises(BrokerError, match=r"cannot reach Redis at redis://:\*\*\*@127.0.0.1:1/0") as info:
        connector.call("ping", lambda c: c.ping())
    assert "hunter2" not in str(info.value)


def test_a_redis_broker_at_a_closed_port_raises_broker_connection_error():
    broker = RedisBroker("redis://127.0.0.1:1/0", BrokerOptions(publish_retry=False, connect_timeout=0.5))
    try:
        with pytest.raises(BrokerConnectionError, match="cannot reach Redis at redis://127.0.0.1:1") as info:
            broker.publish([out("q", "x")])
        assert info.value.__cause__ is not None, "chained to the driver's error"
        with pytest.raises(BrokerConnectionError):
            broker.queue_length("q")
    finally:
        broker.close()


def test_a_connection_killed_mid_command_is_a_broker_connection_error(redis_url):
    import redis

    key = f"celeriac-test-kill-{uuid.uuid4().hex[:8]}"
    connector = RedisConnector(redis_url, pool_limit=1)
    admin = redis.Redis.from_url(redis_url)
    try:
        client_id = connector.call("asking for its id", lambda c: c.client_id())
        killed: list[bool] = []
        killer = threading.Thread(target=lambda: killed.append(kill_when_blocked(admin, client_id)))
        killer.start()
        with pytest.raises(BrokerConnectionError, match="waiting on a list"):
            connector.call("waiting on a list", lambda c: c.blpop([key], timeout=10))
        killer.join()
        assert killed == [True]
        assert connector.call("ping", lambda c: c.ping()) is True  # a new connection serves the next call
    finally:
        admin.close()
        connector.close()


def test_a_stopped_server_is_a_broker_connection_error(private_redis):
    broker = RedisBroker(private_redis.url, BrokerOptions(publish_retry=False, connect_timeout=0.5))
    broker.publish([out("q", "before")])  # a pooled connection is open when the server goes
    private_redis.stop()
    try:
        with pytest.raises(BrokerConnectionError, match="cannot reach Redis"):
            broker.publish([out("q", "after")])
        with pytest.raises(BrokerConnectionError):
            broker.fetch(["q"], 1, 0, "c1")
    finally:
        broker.close()


def test_a_refused_command_is_a_broker_error_not_a_connection_error(redis_url):
    connector = RedisConnector(redis_url)
    try:
        with pytest.raises(BrokerError, match="refused an unknown command") as info:
            connector.call("an unknown command", lambda c: c.execute_command("CELERIAC-NO-SUCH-COMMAND"))
        assert not isinstance(info.value, BrokerConnectionError)
        assert connector.call("ping", lambda c: c.ping()) is True
    finally:
        connector.close()


def test_where_hides_only_the_password():
    assert where("redis://user:pw@h:1/2") == "redis://user:***@h:1/2"
    assert where("redis://h:1/2") == "redis://h:1/2"


def test_publish_retries_while_redis_comes_back(private_redis, caplog):
    q = f"q-{uuid.uuid4().hex[:6]}"
    options = BrokerOptions(
        publish_retry_policy={
            "max_retries": 50,
            "interval_start": 0.1,
            "interval_step": 0.1,
            "interval_max": 0.1,
        }
    )
    broker = RedisBroker(private_redis.url, options)
    broker.publish([out(q, "first")])
    private_redis.stop()
    restarted = threading.Event()

    def start_again() -> None:
        private_redis.start()
        restarted.set()

    with caplog.at_level(logging.WARNING, logger="celeriac.broker"):
        timer = threading.Timer(0.3, start_again)
        timer.start()
        broker.publish([out(q, "second")])
        timer.join()
    assert restarted.is_set()
    assert any("retrying in" in r.getMessage() for r in caplog.records)
    assert broker.queue_length(q).ready == 2  # appendonly: the first one survived the restart
    broker.close()


def test_publish_gives_up_after_the_policy(private_redis):
    options = BrokerOptions(
        publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.01,
            "interval_max": 0.01,
        },
        connect_timeout=0.5,
    )
    broker = RedisBroker(private_redis.url, options)
    private_redis.stop()
    with pytest.raises(BrokerError, match="cannot reach Redis"):
        broker.publish([out("q", "lost")])
    broker.close()


def test_without_publish_retry_the_first_failure_raises(private_redis, caplog):
    broker = RedisBroker(private_redis.url, BrokerOptions(publish_retry=False))
    private_redis.stop()
    with caplog.at_level(logging.WARNING, logger="celeriac.broker"), pytest.raises(BrokerError):
        broker.publish([out("q", "lost")])
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    broker.close()
