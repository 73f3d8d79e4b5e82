"""Fixtures shared by every test directory."""

from __future__ import annotations

import shutil

import pytest

from tests.redis_server import RedisServer, shared_redis_url, unavailable


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis (see :mod:`tests.redis_server`); tests keep to their own key prefix."""
    url, server = shared_redis_url(tmp_path_factory.mktemp("redis"))
    yield url
    if server is not None:
        server.stop()


@pytest.fixture
def private_redis(tmp_path):
    """A private redis-server with the append-only file on, for tests that restart it."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop(kill=True)


@pytest.fixture(scope="module")
def sentinel_cluster(tmp_path_factory):
    """A private Redis Sentinel cluster for the module (:class:`chaos.sentinel_cluster.SentinelCluster`):
    one master, one replica, three sentinels. Without redis-server the tests skip, except
    under ``CI=true``; a test that kills the master leaves the cluster without a replica,
    so it comes last in its module."""
    from chaos.sentinel_cluster import SentinelCluster

    if shutil.which("redis-server") is None:
        unavailable("redis-server is not on PATH (apt-get install redis-server)")
    cluster = SentinelCluster(tmp_path_factory.mktemp("sentinel"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def amqp_vhost():
    """A vhost of its own on the real RabbitMQ (see :mod:`tests.rabbitmq_server`): (URL, name)."""
    from tests.rabbitmq_server import rabbitmqctl, session_vhost

    url, name = session_vhost()
    yield url, name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture(scope="session")
def amqp_url(amqp_vhost):
    return amqp_vhost[0]
