"""Real workers on real RabbitMQ: a killed child, a broker restart, closed connections,
two nodes, bad input. Every test runs in a vhost of its own."""

from __future__ import annotations

import os
import signal
import uuid

import amqp
import pytest

from celeriac.brokers.amqp.connection import parse_url
from celeriac.errors import DeadLetteredError
from celeriac.protocol import TaskMessage, encode
from tests.process.harness import wait_until
from tests.process.monitoring import monitor_sees_the_runs_of_celeriac_workers
from tests.rabbitmq_server import ensure_running, rabbitmqctl, restart_app

pytestmark = pytest.mark.process


@pytest.fixture
def vhost(env, app, tmp_path):
    """A vhost for this test; workers and the in-test producer point at it."""
    ensure_running()
    name = f"celeriac-proc-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    url = f"amqp://guest:guest@127.0.0.1:5672/{name}"
    results = f"sqlite:///{tmp_path / 'results.db'}"
    env.update(CELERIAC_BROKER_URL=url, CELERIAC_RESULT_BACKEND=results)
    saved = {k: app.conf[k] for k in ("broker_url", "result_backend")}
    app.conf.update(broker_url=url, result_backend=results)
    yield name
    app.close()
    app.conf.update(saved)
    rabbitmqctl("delete_vhost", name)


def raw_channel(url: str):
    p = parse_url(url)
    connection = amqp.Connection(p.address, userid=p.userid, password=p.password, virtual_host=p.virtual_host)
    connection.connect()
    return connection, connection.channel()


def test_acks_late_task_of_a_killed_child_runs_again(vhost, app, workers, runs):
    worker = workers("-c", "1", CELERIAC_TASK_ACKS_LATE="true").wait_ready(1)
    result = app.send_task("block", ["victim"])
    runs.wait(1, "victim")
    os.kill(runs.pids("victim")[0], signal.SIGKILL)
    assert result.get(timeout=20) == "second delivery"
    assert runs.count("victim") == 2
    worker.wait_for(r"will run again \(task_acks_late: the broker returns")
    wait_until(lambda: app.broker.queue_length("celery").ready == 0, 10, "the queue to empty")


def test_early_ack_task_of_a_killed_child_is_not_run_again(vhost, app, workers, runs):
    worker = workers("-c", "1").wait_ready(1)
    app.send_task("block", ["victim"])
    runs.wait(1, "victim")
    os.kill(runs.pids("victim")[0], signal.SIGKILL)
    worker.wait_for(r"marked failed \(WorkerLostError\)")
    assert app.send_task("run", ["after"]).get(timeout=20)
    assert runs.count("victim") == 1  # at most once: acked before it ran


def test_broker_restart_mid_run_keeps_durable_tasks_and_drops_the_transient_queue(vhost, app, workers, runs):
    worker = workers("-c", "2", "-Q", "celery", CELERIAC_TASK_ACKS_LATE="true").wait_ready(2)
    master = worker.pid
    app.tasks["run"].apply_async(["never-consumed"], queue="transient")
    app.tasks["run"].apply_many([(f"t{i}", 0.002) for i in range(1500)])
    runs.wait(300)
    restart_app()
    wait_until(lambda: len(runs.per_label()) == 1500, 90, "every durable task to run")
    assert worker.pid == master and worker.proc.poll() is None
    worker.wait_for(r"broker error in child")  # the children saw the restart and came back
    connection, channel = raw_channel(app.conf.broker_url)
    try:
        with pytest.raises(amqp.exceptions.NotFound):
            channel.queue_declare("transient", passive=True)  # gone with the restart, as documented
    finally:
        connection.collect()


def test_closed_connections_are_reopened(vhost, app, workers, runs):
    worker = workers("-c", "2", CELERIAC_TASK_ACKS_LATE="true").wait_ready(2)
    app.tasks["run"].apply_many([(f"a{i}",) for i in range(200)])
    runs.wait(200)
    rabbitmqctl("close_all_connections", "-p", vhost, "closed by the test")
    app.tasks["run"].apply_many([(f"b{i}",) for i in range(200)])  # the producer reconnects too
    wait_until(lambda: len(runs.per_label()) == 400, 30, "tasks after the connections were closed")
    assert worker.proc.poll() is None


def test_two_nodes_run_each_task_exactly_once(vhost, app, workers, runs):
    for name in ("a", "b"):
        workers("-c", "2", "-n", f"{name}@%h")
    for start in range(0, 6000, 2000):
        app.tasks["run"].apply_many([(f"t{i}",) for i in range(start, start + 2000)])
    runs.wait(6000, timeout=90)
    counts = runs.per_label()
    assert len(counts) == 6000 and set(counts.values()) == {1}
    assert len({pid for _, pid, _ in runs.entries()}) >= 3


def test_countdown_task_runs_when_due(vhost, app, workers, runs):
    import time

    workers("-c", "1").wait_ready(1)
    sent = time.time()
    assert app.tasks["started_at"].apply_async(["later"], countdown=1.0).get(timeout=20) >= sent + 1.0
    assert runs.count("later") == 1


def test_bad_input_goes_to_the_dead_letters_with_its_reason(vhost, app, workers, runs):
    workers("-c", "1", CELERIAC_TASK_MESSAGE_MAX_BYTES="2000").wait_ready(1)
    connection, channel = raw_channel(app.conf.broker_url)
    unknown = encode(TaskMessage(id=str(uuid.uuid4()), task="no.such.task"))
    huge = encode(TaskMessage(id=str(uuid.uuid4()), task="run", args=["x" * 5000]))
    try:
        for body, content_type, headers in (
            (b"not json", "application/json", {"task": "run", "id": "1"}),
            (b"\x80\x04K\x01.", "application/x-python-serialize", {"task": "run", "id": "2"}),
            (unknown.body, unknown.content_type, dict(unknown.headers)),
            (huge.body, huge.content_type, dict(huge.headers)),
        ):
            message = amqp.Message(
                body, content_type=content_type, content_encoding="utf-8", application_headers=headers
            )
            channel.basic_publish(message, exchange="celery", routing_key="celery")
    finally:
        connection.close()
    assert app.send_task("run", ["after-garbage"]).get(timeout=20)
    wait_until(lambda: app.broker.dead_letter_count("celery") == 4, 10, "four dead letters")
    reasons = " | ".join(d.reason for d in app.broker.dead_letters(queue="celery"))
    assert "no.such.task" in reasons and "task_message_max_bytes" in reasons
    assert "application/x-python-serialize" in reasons
    assert runs.count("after-garbage") == 1


def test_a_poison_task_is_dead_lettered_logged_and_its_result_fails(vhost, app, workers, runs):
    # acks_late: RabbitMQ hands the killed child's message back; the delivery limit stops the loop
    worker = workers("-c", "1", CELERIAC_TASK_ACKS_LATE="true", CELERIAC_TASK_DELIVERY_LIMIT="2").wait_ready(
        1
    )
    result = app.send_task("crash", ["poison"])
    worker.wait_for(r"dead-lettered: delivered 2 times without being settled")
    with pytest.raises(DeadLetteredError, match="task_delivery_limit=2"):
        result.get(timeout=20)
    assert runs.count("poison") == 2
    assert app.broker.dead_letter_count("celery") == 1
    assert app.send_task("run", ["after-poison"]).get(timeout=20)


def test_the_monitor_sees_the_runs_of_celeriac_workers(vhost, app, workers, runs):
    monitor_sees_the_runs_of_celeriac_workers(app, workers, runs)
