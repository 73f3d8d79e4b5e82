"""Broker, result backend and store through real sentinels, and the same objects after a failover.

One private cluster (:class:`chaos.sentinel_cluster.SentinelCluster`) serves the
module; the failover test kills its master and so comes last.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from celeriac.brokers.base import BrokerOptions
from celeriac.brokers.redis.broker import RedisBroker
from celeriac.errors import BrokerConnectionError
from celeriac.protocol.entities import Queue
from celeriac.results import backend_from_url
from celeriac.results.base import PendingResult
from celeriac.states import SUCCESS
from celeriac.store import store_from_url
from chaos.ports import free_ports
from tests.contract.broker_contract import labels, out


@pytest.fixture
def prefix() -> str:
    return f"sentinel-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def broker(sentinel_cluster, prefix):
    options = {**sentinel_cluster.transport_options, "global_keyprefix": prefix}
    broker = RedisBroker(sentinel_cluster.url, BrokerOptions(transport_options=options))
    yield broker
    broker.close()


@pytest.fixture
def backend(sentinel_cluster):
    backend = backend_from_url(sentinel_cluster.url, "json", ["json"], 60, sentinel_cluster.transport_options)
    yield backend
    backend.close()


@pytest.fixture
def store(sentinel_cluster, prefix):
    store = store_from_url(
        sentinel_cluster.url, "result_backend", sentinel_cluster.transport_options, prefix=prefix
    )
    yield store
    store.close()


@pytest.fixture
def master(sentinel_cluster):
    """A plain client of the master the sentinels name now."""
    host, port = sentinel_cluster.master_address()
    client = redis.Redis(host, port)
    yield client
    client.close()


def test_the_broker_publishes_fetches_and_acks_on_the_master_the_sentinels_name(broker, master, prefix):
    broker.declare_queue(Queue("jobs"))
    broker.publish([out("jobs", "a"), out("jobs", "b")])
    assert master.llen(f"{prefix}jobs") == 2, "the messages are on the master, in kombu's list"
    got = broker.fetch(["jobs"], 5, 1.0, "consumer-1")
    assert labels(got) == ["a", "b"]
    broker.ack(got)
    assert broker.queue_length("jobs").total == 0
    assert broker.pool_stats().in_use == 0


def test_the_result_backend_stores_reads_and_waits_through_the_sentinels(backend, master):
    task_id = str(uuid.uuid4())
    backend.store_many([PendingResult(task_id, SUCCESS, 42, None, "proj.answer")])
    assert master.exists(f"celery-task-meta-{task_id}") == 1
    record = backend.get(task_id)
    assert (record.state, record.result, record.name) == (SUCCESS, 42, "proj.answer")
    assert backend.wait(task_id, timeout=5).result == 42


def test_the_store_keeps_its_keys_on_the_master(store, master, prefix):
    assert store.incr("counter", 2) == 2
    assert store.add("lease", b"x", 30, owner="me")
    assert store.owner_of("lease") == "me"
    assert master.exists(f"{prefix}v:counter") == 1


def test_a_dead_sentinel_named_first_costs_no_time(sentinel_cluster, prefix):
    (dead,) = free_ports(1)
    options = {**sentinel_cluster.transport_options, "global_keyprefix": prefix}
    broker = RedisBroker(
        f"sentinel://127.0.0.1:{dead}/0;{sentinel_cluster.url}", BrokerOptions(transport_options=options)
    )
    try:
        started = time.monotonic()
        broker.publish([out("jobs", "a")])
        assert time.monotonic() - started < 2, "the next sentinel is asked at once, not after retries"
        got = broker.fetch(["jobs"], 1, 1.0, "consumer-1")
        assert labels(got) == ["a"]
        broker.ack(got)
    finally:
        broker.close()


def test_after_a_failover_the_same_broker_backend_and_store_work_again(
    sentinel_cluster, broker, backend, store, master, prefix
):
    broker.declare_queue(Queue("jobs"))
    broker.publish([out("jobs", "acked")])
    (acked,) = broker.fetch(["jobs"], 1, 0, "consumer-2")
    broker.publish([out("jobs", "before")])
    held = f"{prefix}celeriac.held.consumer-2"
    record = master.hget(held, acked.tag)
    old_task = str(uuid.uuid4())
    backend.store_many([PendingResult(old_task, SUCCESS, "old", None, "proj.t")])
    store.set("kept", b"v")
    # everything written so far is on the replica before the master dies: this test is about
    # reconnecting, not about the writes asynchronous replication can lose (docs/redis.md)
    master.set(f"{prefix}fence", 1)
    assert master.wait(1, 5000) == 1
    broker.ack([acked])  # the replica may or may not receive this one before the master dies

    killed = sentinel_cluster.kill_master()
    with pytest.raises(BrokerConnectionError, match="cannot reach Redis at sentinel://"):
        broker.queue_length("jobs")
    new = sentinel_cluster.wait_failover(timeout=30)
    assert new != killed
    with redis.Redis(*new) as promoted:
        promoted.hset(held, acked.tag, record)  # make sure: the failover lost the ack

    got = broker.fetch(["jobs"], 5, 1.0, "consumer-1")
    assert labels(got) == ["before"]
    broker.ack(got)
    broker.publish([out("jobs", "after")])
    got = broker.fetch(["jobs"], 5, 1.0, "consumer-1")
    assert labels(got) == ["after"]
    broker.ack(got)
    again = broker.fetch(["jobs"], 5, 0, "consumer-2")
    assert labels(again) == ["acked"], "Redis lost its ack: it comes back (at least once)"
    broker.ack(again)
    assert broker.queue_length("jobs").total == 0
    assert broker.pool_stats().in_use == 0

    assert backend.get(old_task).result == "old"
    new_task = str(uuid.uuid4())
    backend.store_many([PendingResult(new_task, SUCCESS, "new", None, "proj.t")])
    assert backend.wait(new_task, timeout=5).result == "new"

    assert store.get("kept") == b"v"
    assert store.incr("after-failover") == 1
    with redis.Redis(*new) as promoted:
        assert promoted.llen(f"{prefix}jobs") == 0
        assert promoted.exists(f"celery-task-meta-{new_task}") == 1
