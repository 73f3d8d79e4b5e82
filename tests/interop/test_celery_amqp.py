"""Stock Celery 5 and celeriac on one RabbitMQ: each side's producer feeds the other's worker.

The tasks are defined once, by the same names, for both apps (``shared_tasks``);
every test has a RabbitMQ vhost of its own (made and deleted with ``rabbitmqctl``),
so neither side's queues outlive it. Results go to the shared Redis, as in
``test_celery_redis``. Workers are real processes: ``celeriac worker`` and
``celery worker -P prefork``.

Both sides lay the queue out the same way: ``celery``, durable, bound to the durable
direct exchange ``celery`` with the routing key ``celery``. What differs is ETA:
Celery publishes a countdown task at once with an ``eta`` header and its worker holds
it in memory; celeriac keeps it in RabbitMQ, in its ``celeriac.delay.NN`` queues.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac.brokers.amqp.wire import MAX_DELAY_LEVEL, MIN_DELAY_LEVEL
from tests.interop.monitor_checks import monitor_watches_a_plain_celery_deployment
from tests.interop.shared_tasks import ADD, FLAKY, RECORD, make_celeriac, make_celery
from tests.process.harness import wait_until

pytestmark = pytest.mark.process

#: How early a countdown task may start: celeriac lets a message 1 ms early through
#: (``ETA_EARLY_S``); the rest is float rounding of timestamps.
EARLY_S = 0.005
CELERY_READY = r"@\S+ ready\."
CELERIAC_READY = r" ready: \d+ children"


@pytest.fixture
def vhost() -> Iterator[tuple[str, str]]:
    """A vhost of this test's own on the real RabbitMQ, (URL, name), deleted at the end
    (after the workers are killed: they depend on it through ``broker_url``)."""
    from tests.rabbitmq_server import rabbitmqctl, session_vhost

    url, name = session_vhost()
    yield url, name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture
def broker_url(vhost: tuple[str, str]) -> str:
    """Overrides the interop conftest's Redis: both sides share this test's vhost."""
    return vhost[0]


def only(entries: list[dict], label: str) -> dict:
    (entry,) = [e for e in entries if e["label"] == label]
    return entry


def ready_count(celery_app: Any, queue: str = "celery") -> int:
    """Messages ready on ``queue`` as kombu (Celery's transport) counts them."""
    with celery_app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


def held_by_rabbitmq(vhost: str, queue: str = "celery") -> tuple[int, int]:
    """(ready, unacked) of ``queue`` as RabbitMQ itself counts them: no AMQP client is told
    about other consumers' unacked messages."""
    from tests.rabbitmq_server import rabbitmqctl

    columns = ("name", "messages_ready", "messages_unacknowledged")
    out = rabbitmqctl("list_queues", "-p", vhost, "-q", "--no-table-headers", *columns)
    for line in out.splitlines():
        name, ready, unacked = line.split()
        if name == queue:
            return int(ready), int(unacked)
    raise AssertionError(f"no queue {queue!r} in vhost {vhost!r}: {out}")


def existing_queues(celery_app: Any, names: list[str]) -> list[str]:
    """Which of ``names`` exist on the vhost (a passive declare of a missing queue
    closes its channel, so each asks on a channel of its own)."""
    from amqp.exceptions import NotFound

    found = []
    with celery_app.connection_for_write() as conn:
        for name in names:
            channel = conn.channel()
            try:
                channel.queue_declare(name, passive=True)
                found.append(name)
            except NotFound:
                pass
            finally:
                channel.close()
    return found


DELAY_QUEUES = [f"celeriac.delay.{k:02d}" for k in range(MIN_DELAY_LEVEL, MAX_DELAY_LEVEL + 1)]


def test_a_stock_celery_producer_feeds_a_celeriac_worker(celery_app, celeriac_app, workers, runs):
    # ready first, so that the countdown task arrives before it is due
    workers.celeriac("-c", "2").wait_ready(2)
    record = celery_app.tasks[RECORD]
    sent = {
        "send_task": celery_app.send_task(
            RECORD, ["send_task", 1, "two"], {"three": 3.5, "nested": {"a": [1, None]}}
        ).id,
        "delay": record.delay("delay", [1, 2], flag=True).id,
        "retries": record.apply_async(["retries"], retries=2).id,
        # RabbitMQ ignores the priority: Celery's queue has no x-max-priority
        "priority": record.apply_async(["priority", 9], priority=9).id,
        "flaky": celery_app.send_task(FLAKY, ["flaky"]).id,
    }
    countdown = 0.5
    countdown_sent_at = time.time()
    sent["countdown"] = record.apply_async(["countdown"], countdown=countdown).id

    entries = runs.wait(7)  # the flaky task runs twice
    assert {e["side"] for e in entries} == {"celeriac"}
    for label, task_id in sent.items():
        assert {e["id"] for e in entries if e["label"] == label} == {task_id}, label

    assert only(entries, "send_task")["args"] == [1, "two"]
    assert only(entries, "send_task")["kwargs"] == {"three": 3.5, "nested": {"a": [1, None]}}
    assert only(entries, "delay")["args"] == [[1, 2]]
    assert only(entries, "delay")["kwargs"] == {"flag": True}
    assert only(entries, "priority")["args"] == [9]
    assert only(entries, "retries")["retries"] == 2
    assert only(entries, "send_task")["retries"] == 0
    # Celery publishes a countdown task at once with an eta header; celeriac's broker
    # holds it back in its delay queues (in RabbitMQ, not in worker memory) until due
    assert only(entries, "countdown")["at"] >= countdown_sent_at + countdown - EARLY_S
    assert existing_queues(celery_app, DELAY_QUEUES), "no celeriac.delay.NN queue was used"
    # a celeriac retry of a Celery message: same id, retries counted up
    assert sorted(e["retries"] for e in entries if e["label"] == "flaky") == [0, 1]

    wait_until(lambda: celeriac_app.broker.queue_length("celery").total == 0, 10, "every message acked")
    assert ready_count(celery_app) == 0


def test_a_celeriac_producer_feeds_a_stock_celery_worker(celeriac_app, celery_app, workers, runs):
    record = celeriac_app.tasks[RECORD]
    sent = {
        "delay": record.delay("delay", 1, [2], k={"v": 3}).id,
        "send_task": celeriac_app.send_task(RECORD, ["send_task"], {"x": "y"}).id,
        "retries": record.apply_async(["retries"], retries=1).id,
        "priority": record.apply_async(["priority"], priority=6).id,
        "flaky": celeriac_app.send_task(FLAKY, ["flaky"]).id,
    }
    many = record.apply_many([(f"many-{i}", i, {"i": i}) for i in range(3)])
    sent.update({f"many-{i}": result.id for i, result in enumerate(many)})
    countdown = 0.5
    countdown_sent_at = time.time()
    sent["countdown"] = record.apply_async(["countdown"], countdown=countdown).id
    # celeriac publishes a countdown task to its delay queues, not to the queue itself
    assert existing_queues(celery_app, DELAY_QUEUES)
    assert ready_count(celery_app) == len(sent) - 1

    workers.celery("-c", "2", "-P", "prefork", "-Q", "celery")
    entries = runs.wait(len(sent) + 1)  # the flaky task runs twice
    assert {e["side"] for e in entries} == {"celery"}
    for label, task_id in sent.items():
        assert {e["id"] for e in entries if e["label"] == label} == {task_id}, label

    assert only(entries, "delay")["args"] == [1, [2]]
    assert only(entries, "delay")["kwargs"] == {"k": {"v": 3}}
    assert only(entries, "send_task")["kwargs"] == {"x": "y"}
    assert only(entries, "retries")["retries"] == 1
    assert only(entries, "delay")["retries"] == 0
    assert only(entries, "priority")["args"] == []
    for i in range(3):
        assert only(entries, f"many-{i}")["args"] == [i, {"i": i}]
    # back from the delay queue (early, by up to a hop) Celery holds it until its eta
    assert only(entries, "countdown")["at"] >= countdown_sent_at + countdown - EARLY_S
    # a Celery retry of a celeriac message: same id, retries counted up
    assert sorted(e["retries"] for e in entries if e["label"] == "flaky") == [0, 1]

    # Celery took everything off the queue (it acks early, as celeriac does)
    wait_until(lambda: ready_count(celery_app) == 0, 10, "Celery to take every message")
    assert celeriac_app.broker.queue_length("celery").ready == 0


def test_both_workers_share_one_queue_and_run_each_message_once(
    celery_app, celeriac_app, workers, runs, vhost
):
    # Celery's worker declares `celery` first, then celeriac's declares it again
    # (test_results_cross_over_in_both_directions has the other order)
    celery_worker = workers.celery("-c", "2", "-P", "prefork", "-Q", "celery")
    celery_worker.wait_for(CELERY_READY)
    celeriac_worker = workers.celeriac("-c", "2", "-Q", "celery")
    celeriac_worker.wait_for(CELERIAC_READY)

    n = 1000
    celeriac_app.tasks[RECORD].apply_many([(f"from-celeriac-{i}",) for i in range(n)])
    record = celery_app.tasks[RECORD]
    for i in range(n):
        record.delay(f"from-celery-{i}")

    runs.wait(2 * n, timeout=30)
    # nothing left in RabbitMQ, ready or unacked (both sides ack before running a task):
    # no message can be delivered again, so the counts below are final
    wait_until(lambda: held_by_rabbitmq(vhost[1]) == (0, 0), 10, "an empty queue `celery`")

    entries = runs.entries()
    counts = Counter(e["label"] for e in entries)
    assert len(counts) == 2 * n
    assert set(counts.values()) == {1}
    sides = Counter(e["side"] for e in entries)
    assert sides["celery"] > 0 and sides["celeriac"] > 0, sides
    assert "PRECONDITION_FAILED" not in celery_worker.log() + celeriac_worker.log()


def test_queue_length_of_celery_messages_agrees_on_both_sides(celery_app, celeriac_app, workers):
    record = celery_app.tasks[RECORD]
    for i in range(20):
        record.delay(f"m{i}")
    for i in range(5):
        record.apply_async([f"urgent{i}"], priority=9)
    celeriac_app.tasks[RECORD].apply_many([(f"c{i}",) for i in range(5)])
    # waiting in celeriac.delay.NN: counted by neither side on `celery`
    celeriac_app.tasks[RECORD].apply_async(["later"], countdown=60)
    n = 30

    # Celery publishes without confirms: let RabbitMQ catch up, then both must agree
    wait_until(lambda: ready_count(celery_app) == n, 10, f"{n} messages on `celery`")
    length = celeriac_app.broker.queue_length("celery")
    assert (length.ready, length.scheduled, length.reserved, length.running) == (n, 0, 0, 0)

    done = workers.command("inspect", "-A", "shared_tasks:celeriac_app", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = [q for q in json.loads(done.stdout)["queues"] if q["queue"] == "celery"]
    assert row == {"queue": "celery", "ready": n, "scheduled": 0, "reserved": 0, "running": 0}


def test_results_cross_over_in_both_directions(broker_url, redis_url, keyprefix, workers, runs, result_keys):
    backend = {"INTEROP_RESULT_BACKEND": redis_url}
    celery_app = make_celery(broker_url, keyprefix, redis_url, set_as_current=False)
    celeriac_app = make_celeriac(broker_url, keyprefix, redis_url, set_as_current=False)
    try:
        # Celery sends, a celeriac worker runs and stores, Celery's AsyncResult.get() reads;
        # celeriac's worker is the first to declare `celery` here
        workers.celeriac("-c", "2", "-Q", "celery", **backend).wait_for(CELERIAC_READY)
        sent = celery_app.send_task(ADD, [2, 3])
        result_keys.append(sent.id)
        assert sent.get(timeout=15) == 5
        assert sent.state == "SUCCESS"
        assert celeriac_app.AsyncResult(sent.id).get(timeout=5) == 5

        # celeriac sends to another queue, a Celery worker runs and stores, celeriac reads;
        # that worker declares `celery` too, after celeriac's
        celery_worker = workers.celery("-c", "1", "-P", "prefork", "-Q", "celery,to-celery", **backend)
        back = celeriac_app.tasks[ADD].apply_async([20, 22], queue="to-celery")
        result_keys.append(back.id)
        assert back.get(timeout=15) == 42
        assert celery_app.AsyncResult(back.id).get(timeout=5) == 42
        assert [(e["side"], e["id"]) for e in runs.entries()] == [("celeriac", sent.id), ("celery", back.id)]
        celery_worker.wait_for(CELERY_READY)
    finally:
        celeriac_app.close()
        celery_app.close()


def test_celeriac_monitor_watches_a_plain_celery_deployment(celery_app, celeriac_app, workers):
    monitor_watches_a_plain_celery_deployment(celery_app, celeriac_app, workers)
