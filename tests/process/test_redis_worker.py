"""Real workers on real Redis: kills, a Redis restart, dropped connections, several nodes, bad input."""

from __future__ import annotations

import os
import signal
import urllib.parse
import uuid

import psutil
import pytest
import redis

from celeriac.brokers.redis.broker import to_kombu
from celeriac.errors import DeadLetteredError
from celeriac.protocol import TaskMessage, encode
from tests.process.harness import wait_until
from tests.process.monitoring import monitor_sees_the_runs_of_celeriac_workers

pytestmark = pytest.mark.process


def _redis_env(env, url: str, prefix: str) -> dict[str, str]:
    env.update(
        CELERIAC_BROKER_URL=url,
        CELERIAC_RESULT_BACKEND=url,
        CELERIAC_BROKER_TRANSPORT_OPTIONS=f'{{"global_keyprefix": "{prefix}"}}',
    )
    return env


@pytest.fixture
def prefix() -> str:
    return f"proc-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def shared(env, redis_url, prefix):
    """Workers and producer on the shared Redis, under a key prefix of their own."""
    _redis_env(env, redis_url, prefix)
    yield redis_url
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(autouse=True)
def _restore(app):
    """proc_app is imported once per session: put back what these tests point at Redis."""
    saved = {k: app.conf[k] for k in ("broker_url", "result_backend", "broker_transport_options")}
    yield
    app.close()
    app.conf.update(saved)


@pytest.fixture
def rapp(app, env):
    app.conf.update(
        broker_url=env["CELERIAC_BROKER_URL"],
        result_backend=env["CELERIAC_RESULT_BACKEND"],
        broker_transport_options={"global_keyprefix": env["CELERIAC_BROKER_TRANSPORT_OPTIONS"][22:-2]},
    )
    return app


def test_acks_late_task_of_a_killed_child_runs_again(shared, rapp, workers, runs):
    worker = workers("-c", "1", CELERIAC_TASK_ACKS_LATE="true").wait_ready(1)
    result = rapp.send_task("block", ["victim"])
    runs.wait(1, "victim")
    os.kill(runs.pids("victim")[0], signal.SIGKILL)
    assert result.get(timeout=20) == "second delivery"
    assert runs.count("victim") == 2
    worker.wait_for(r"will run again")
    wait_until(lambda: rapp.broker.queue_length("celery").total == 0, 10, "the ack")


@pytest.mark.parametrize(
    "task",
    [
        "crash",  # dies in its task: the master dead-letters it when it sees the child die
        "die_before_start",  # dies before its task starts: the master hands it back counted, and
        # the fetch that finds it past the limit dead-letters it and reports it to the child
    ],
)
def test_a_message_that_kills_every_child_is_dead_lettered_logged_and_its_result_fails(
    shared, rapp, workers, runs, task
):
    limit = {"CELERIAC_TASK_ACKS_LATE": "true", "CELERIAC_TASK_DELIVERY_LIMIT": "2"}
    worker = workers("-c", "1", **limit).wait_ready(1)
    result = rapp.send_task(task, ["poison"])
    worker.wait_for(rf"{task}\[{result.id}\].*(went to the dead letters|dead-lettered)")
    with pytest.raises(DeadLetteredError):
        result.get(timeout=20)
    assert runs.count("poison") == 2
    assert rapp.broker.dead_letter_count("celery") == 1
    assert rapp.send_task("run", ["after the poison"]).get(timeout=20)


def test_node_killed_mid_task_is_recovered_by_another_node(shared, rapp, workers, runs):
    lease = {"CELERIAC_TASK_ACKS_LATE": "true", "CELERIAC_BROKER_LEASE_TIMEOUT": "1.5"}
    doomed = workers("-c", "1", "-n", "doomed@%h", **lease).wait_ready(1)
    result = rapp.send_task("block", ["victim"])
    runs.wait(1, "victim")
    os.killpg(os.getpgid(doomed.pid), signal.SIGKILL)  # the whole machine, as it were
    with __import__("contextlib").suppress(ProcessLookupError):
        os.kill(runs.pids("victim")[0], signal.SIGKILL)
    workers("-c", "1", "-n", "survivor@%h", **lease).wait_ready(1)
    assert result.get(timeout=30) == "second delivery"
    wait_until(lambda: rapp.broker.queue_length("celery").total == 0, 10, "the queue to empty")


def test_redis_restart_mid_run_loses_no_durable_task(env, private_redis, app, workers, runs, prefix):
    _redis_env(env, private_redis.url, prefix)
    app.conf.update(
        broker_url=private_redis.url,
        result_backend=private_redis.url,
        broker_transport_options={"global_keyprefix": prefix},
    )
    worker = workers("-c", "2", CELERIAC_TASK_ACKS_LATE="true").wait_ready(2)
    master = worker.pid
    app.tasks["run"].apply_many([(f"t{i}", 0.002) for i in range(1500)])
    runs.wait(300)
    private_redis.restart()
    try:
        wait_until(lambda: len(runs.per_label()) == 1500, 60, "every task to run")
    except AssertionError as exc:  # say how far it got and what the worker said
        raise AssertionError(
            f"{exc}: {len(runs.per_label())} of 1500 ran; worker log:\n{worker.log()[-4000:]}"
        ) from None
    assert worker.pid == master and worker.proc.poll() is None


def test_killed_connections_are_reopened(shared, rapp, workers, runs, redis_url):
    worker = workers("-c", "2", CELERIAC_TASK_ACKS_LATE="true").wait_ready(2)
    rapp.tasks["run"].apply_many([(f"a{i}",) for i in range(200)])
    runs.wait(200)
    # every connection the worker's processes hold to Redis, found by their local ports
    server_port = urllib.parse.urlsplit(redis_url).port or 6379
    ports = {
        c.laddr.port
        for pid in (worker.pid, *worker.child_pids)
        for c in psutil.Process(pid).net_connections("tcp")
        if c.raddr and c.raddr.port == server_port
    }
    client = redis.Redis.from_url(redis_url)
    killed = 0
    for info in client.client_list():
        if int(info["addr"].rpartition(":")[2]) in ports:
            killed += client.client_kill_filter(_id=info["id"])
    client.close()
    assert killed >= 3  # the master's and each child's
    rapp.tasks["run"].apply_many([(f"b{i}",) for i in range(200)])
    wait_until(lambda: len(runs.per_label()) == 400, 30, "tasks after the connections were killed")


def test_worker_started_while_redis_is_down_waits_then_serves(env, private_redis, app, workers, runs, prefix):
    _redis_env(env, private_redis.url, prefix)
    private_redis.stop()
    worker = workers("-c", "1")
    worker.wait_for(r"broker unreachable while starting \(attempt 1")
    private_redis.start()
    worker.wait_ready(1, timeout=30)
    app.conf.update(
        broker_url=private_redis.url,
        result_backend=private_redis.url,
        broker_transport_options={"global_keyprefix": prefix},
    )
    assert app.send_task("run", ["late start"]).get(timeout=20)


def test_three_nodes_run_20000_tasks_exactly_once(shared, rapp, workers, runs):
    for name in ("a", "b", "c"):
        workers("-c", "2", "-n", f"{name}@%h")
    for start in range(0, 20000, 2000):
        rapp.tasks["run"].apply_many([(f"t{i}",) for i in range(start, start + 2000)])
    runs.wait(20000, timeout=90)
    counts = runs.per_label()
    assert len(counts) == 20000 and set(counts.values()) == {1}
    assert len({pid for _, pid, _ in runs.entries()}) >= 3


def test_garbage_on_the_list_is_dead_lettered_and_the_worker_serves_on(
    shared, rapp, workers, runs, redis_url
):
    workers("-c", "1", CELERIAC_TASK_MESSAGE_MAX_BYTES="2000").wait_ready(1)
    prefix = rapp.conf.broker_transport_options["global_keyprefix"]
    client = redis.Redis.from_url(redis_url)
    unknown = to_kombu(encode(TaskMessage(id=str(uuid.uuid4()), task="no.such.task")), "", "celery", 0)
    huge = to_kombu(encode(TaskMessage(id=str(uuid.uuid4()), task="run", args=["x" * 5000])), "", "celery", 0)
    client.lpush(f"{prefix}celery", b"not json", b'{"body": 1}', unknown, huge)
    client.close()
    assert rapp.send_task("run", ["after garbage"]).get(timeout=20)
    wait_until(lambda: rapp.broker.dead_letter_count("celery") == 4, 10, "four dead letters")
    reasons = " | ".join(d.reason for d in rapp.broker.dead_letters(queue="celery"))
    assert "not JSON" in reasons and "needs 'body'" in reasons
    assert "no.such.task" in reasons and "task_message_max_bytes" in reasons


def test_the_monitor_sees_the_runs_of_celeriac_workers(shared, rapp, workers, runs):
    monitor_sees_the_runs_of_celeriac_workers(rapp, workers, runs)
