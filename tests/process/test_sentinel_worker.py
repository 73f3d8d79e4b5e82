"""A real worker on Redis behind Sentinel: tasks sent through ``sentinel://``, the master killed."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from celeriac.states import SUCCESS

pytestmark = pytest.mark.process


@pytest.fixture
def sentinel_app(app, env, sentinel_cluster):
    """proc_app and its workers on the cluster: broker and results, under a key prefix."""
    prefix = f"proc-{uuid.uuid4().hex[:8]}:"
    broker_options = {**sentinel_cluster.transport_options, "global_keyprefix": prefix}
    env.update(
        CELERIAC_BROKER_URL=sentinel_cluster.url,
        CELERIAC_RESULT_BACKEND=sentinel_cluster.url,
        CELERIAC_BROKER_TRANSPORT_OPTIONS=json.dumps(broker_options),
        CELERIAC_RESULT_BACKEND_TRANSPORT_OPTIONS=json.dumps(sentinel_cluster.transport_options),
    )
    app.conf.update(
        broker_url=sentinel_cluster.url,
        result_backend=sentinel_cluster.url,
        broker_transport_options=broker_options,
        result_backend_transport_options=sentinel_cluster.transport_options,
    )
    return app


def test_a_worker_on_sentinel_goes_on_after_the_master_fails_over(
    sentinel_app, sentinel_cluster, workers, runs
):
    worker = workers("-c", "2", CELERIAC_TASK_ACKS_LATE="true").wait_ready(2)
    before = [sentinel_app.send_task("run", [f"before-{i}"]) for i in range(4)]
    assert all(isinstance(result.get(timeout=20), int) for result in before)
    # what ran is on the replica too before the master dies (what replication can lose is
    # documented; this is about the worker finding the new master)
    host, port = sentinel_cluster.master_address()
    with redis.Redis(host, port) as master:
        master.set("fence", 1)
        assert master.wait(1, 5000) == 1

    sentinel_cluster.kill_master()
    worker.wait_for(r"broker error in child \d+", timeout=10)  # the idle children lost their connection
    sentinel_cluster.wait_failover(timeout=30)

    after = [sentinel_app.send_task("run", [f"after-{i}"]) for i in range(4)]
    assert all(isinstance(result.get(timeout=30), int) for result in after)
    assert all(runs.count(f"after-{i}") >= 1 for i in range(4))
    assert all(result.state == SUCCESS for result in before), "results stored before stay"
    assert sentinel_app.broker.queue_length("celery").ready == 0
