"""The fault-injection suite's Sentinel cluster (chaos/sentinel_cluster.py): it fails over when its
master is killed, says why when it cannot start, and leaves no process behind either way."""

from __future__ import annotations

import shutil

import psutil
import pytest
import redis

from chaos.sentinel_cluster import SentinelCluster
from tests import redis_server

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _redis_server():
    if shutil.which("redis-server") is None:
        redis_server.unavailable("redis-server is not on PATH")


def _pids(cluster: SentinelCluster) -> list[psutil.Process]:
    return [psutil.Process(node.proc.pid) for node in cluster.nodes if node.proc is not None]


def test_the_cluster_fails_over_to_the_replica_and_stop_kills_every_process(tmp_path):
    cluster = SentinelCluster(tmp_path / "cluster", master_name="unit")
    try:
        cluster.start()
        processes = _pids(cluster)
        assert len(processes) == 5  # master, replica, three sentinels
        assert cluster.transport_options == {"master_name": "unit"}
        assert cluster.url.count("sentinel://127.0.0.1:") == 3
        old = cluster.master_address()
        with redis.Redis(*old) as master:
            master.set("written", "before")
            assert master.wait(1, 5000) == 1

        assert cluster.kill_master() == old
        new = cluster.wait_failover(timeout=30)

        assert new != old
        assert cluster.master_address() == new
        with redis.Redis(*new) as promoted:
            assert promoted.execute_command("ROLE")[0] == b"master"
            assert promoted.get("written") == b"before"
    finally:
        cluster.stop()
    assert not any(process.is_running() for process in processes)
    cluster.stop()  # twice is harmless


def test_a_sentinel_that_cannot_start_is_reported_with_its_output_and_nothing_is_left(tmp_path):
    cluster = SentinelCluster(tmp_path / "cluster", master_name="two words")
    with pytest.raises(RuntimeError, match="sentinel-0") as info:
        cluster.start()
    assert "Unrecognized sentinel configuration statement" in str(info.value)
    assert all(node.proc is None for node in cluster.nodes), "start() stopped what it had started"


def test_wait_failover_needs_a_killed_master(tmp_path):
    with pytest.raises(RuntimeError, match="follows kill_master"):
        SentinelCluster(tmp_path).wait_failover(timeout=1)
