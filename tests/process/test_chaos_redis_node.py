"""The fault-injection suite's private Redis (chaos/redis_node.py): a write Redis acknowledged
survives a SIGKILL of the server and a restart on the same directory."""

from __future__ import annotations

import shutil

import psutil
import pytest
import redis

from chaos.redis_node import RedisNode
from tests import redis_server

pytestmark = pytest.mark.process


@pytest.mark.timeout(60)
def test_redis_node_keeps_acknowledged_writes_across_kill_and_restart(tmp_path):
    if shutil.which("redis-server") is None:
        redis_server.unavailable("redis-server is not on PATH")
    node = RedisNode(tmp_path / "redis")
    try:
        node.start()
        client = redis.Redis.from_url(node.url)
        client.set("kept", "yes")
        client.rpush("list", *range(1000))
        client.close()
        killed = psutil.Process(node.pid)
        port = node.port

        node.kill()
        assert not killed.is_running()
        node.restart()

        assert node.port == port
        client = redis.Redis.from_url(node.url)
        assert client.get("kept") == b"yes"
        assert client.llen("list") == 1000
        client.close()
    finally:
        node.stop()
    assert node.pid is None
