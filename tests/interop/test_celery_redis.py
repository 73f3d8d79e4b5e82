"""Stock Celery 5 and celeriac on one Redis: each side's producer feeds the other's worker.

The tasks are defined once, by the same names, for both apps (``shared_tasks``);
every test keeps to its own ``global_keyprefix``. Workers are real processes:
``celeriac worker`` and ``celery worker -P prefork``.
"""

from __future__ import annotations

import json
import time

import pytest

from celeriac.brokers.redis.broker import SEP
from tests.interop.monitor_checks import monitor_watches_a_plain_celery_deployment
from tests.interop.shared_tasks import ADD, FLAKY, RECORD, make_celeriac, make_celery
from tests.process.harness import wait_until

pytestmark = pytest.mark.process

CELERY_LISTS = ("celery", f"celery{SEP}3", f"celery{SEP}6", f"celery{SEP}9")


def llen_all(rdb, keyprefix: str) -> int:
    """Messages waiting on the queue ``celery`` as Celery's transport counts them."""
    return sum(rdb.llen(keyprefix + key) for key in CELERY_LISTS)


def only(entries: list[dict], label: str) -> dict:
    (entry,) = [e for e in entries if e["label"] == label]
    return entry


def test_a_stock_celery_producer_feeds_a_celeriac_worker(celery_app, celeriac_app, workers, runs):
    workers.celeriac("-c", "2")
    record = celery_app.tasks[RECORD]
    sent = {
        "send_task": celery_app.send_task(
            RECORD, ["send_task", 1, "two"], {"three": 3.5, "nested": {"a": [1, None]}}
        ).id,
        "delay": record.delay("delay", [1, 2], flag=True).id,
        "retries": record.apply_async(["retries"], retries=2).id,
        "priority": record.apply_async(["priority", 9], priority=9).id,
        "flaky": celery_app.send_task(FLAKY, ["flaky"]).id,
    }
    countdown_sent_at = time.time()
    sent["countdown"] = record.apply_async(["countdown"], countdown=0.5).id

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
    # Celery pushes a countdown task at once with an eta header: the worker holds it until due
    assert only(entries, "countdown")["at"] >= countdown_sent_at + 0.5 - 0.06
    # a celeriac retry of a Celery message: same id, retries counted up
    assert sorted(e["retries"] for e in entries if e["label"] == "flaky") == [0, 1]

    wait_until(lambda: celeriac_app.broker.queue_length("celery").total == 0, 10, "every message acked")


def test_celery_priorities_run_lower_numbers_first_on_a_celeriac_worker(
    celery_app, workers, runs, rdb, keyprefix
):
    record = celery_app.tasks[RECORD]
    for label, priority in [("p9", 9), ("p0", 0), ("p6", 6), ("p3", 3), ("p4", 4)]:
        record.apply_async([label], priority=priority)
    # kombu's layout: one list per priority step
    assert [rdb.llen(keyprefix + key) for key in CELERY_LISTS] == [1, 2, 1, 1]

    workers.celeriac("-c", "1", "--prefetch-multiplier", "1")
    entries = runs.wait(5)
    assert [e["label"] for e in entries] == ["p0", "p3", "p4", "p6", "p9"]


def test_a_celeriac_producer_feeds_a_stock_celery_worker(celeriac_app, workers, runs, rdb, keyprefix):
    record = celeriac_app.tasks[RECORD]
    sent = {
        "delay": record.delay("delay", 1, [2], k={"v": 3}).id,
        "send_task": celeriac_app.send_task(RECORD, ["send_task"], {"x": "y"}).id,
        "retries": record.apply_async(["retries"], retries=1).id,
        "priority": record.apply_async(["priority"], priority=6).id,
    }
    many = record.apply_many([(f"many-{i}", i, {"i": i}) for i in range(3)])
    sent.update({f"many-{i}": result.id for i, result in enumerate(many)})

    workers.celery("-c", "2", "-P", "prefork", "-Q", "celery")
    entries = runs.wait(len(sent))
    assert {e["side"] for e in entries} == {"celery"}
    assert {e["label"]: e["id"] for e in entries} == sent

    assert only(entries, "delay")["args"] == [1, [2]]
    assert only(entries, "delay")["kwargs"] == {"k": {"v": 3}}
    assert only(entries, "send_task")["kwargs"] == {"x": "y"}
    assert only(entries, "retries")["retries"] == 1
    assert only(entries, "delay")["retries"] == 0
    for i in range(3):
        assert only(entries, f"many-{i}")["args"] == [i, {"i": i}]

    # Celery took everything off the lists and acked it (its unacked hash is empty again)
    wait_until(
        lambda: llen_all(rdb, keyprefix) == 0 and rdb.hlen(keyprefix + "unacked") == 0,
        10,
        "Celery to ack every message",
    )


def test_both_workers_share_one_queue_and_run_each_message_once(celery_app, celeriac_app, workers, runs):
    workers.celeriac("-c", "2")
    workers.celery("-c", "2", "-P", "prefork", "-Q", "celery")
    celeriac_app.tasks[RECORD].apply_many([(f"from-celeriac-{i}",) for i in range(40)])
    for i in range(40):
        celery_app.tasks[RECORD].delay(f"from-celery-{i}")

    runs.wait(80, timeout=30)
    counts = {label: len(entries) for label, entries in runs.by_label().items()}
    assert len(counts) == 80
    assert set(counts.values()) == {1}


def test_queue_length_of_celery_messages_agrees_on_both_sides(
    celery_app, celeriac_app, workers, rdb, keyprefix
):
    record = celery_app.tasks[RECORD]
    for i in range(20):
        record.delay(f"m{i}")
    for i in range(5):
        record.apply_async([f"urgent{i}"], priority=9)
    n = 25

    length = celeriac_app.broker.queue_length("celery")
    assert (length.ready, length.scheduled, length.reserved, length.running) == (n, 0, 0, 0)
    assert llen_all(rdb, keyprefix) == n
    with celery_app.connection_for_write() as conn:
        # Celery's own count (kombu sums the priority lists); a passive declare would fail
        # under global_keyprefix (kombu checks existence with an unprefixed EXISTS)
        assert conn.default_channel.queue_declare(queue="celery").message_count == n

    done = workers.command("inspect", "-A", "shared_tasks:celeriac_app", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = [q for q in json.loads(done.stdout)["queues"] if q["queue"] == "celery"]
    assert row == {"queue": "celery", "ready": n, "scheduled": 0, "reserved": 0, "running": 0}


def test_results_cross_over_in_both_directions(redis_url, keyprefix, workers, runs, result_keys):
    backend = {"INTEROP_RESULT_BACKEND": redis_url}
    celery_app = make_celery(redis_url, keyprefix, redis_url, set_as_current=False)
    celeriac_app = make_celeriac(redis_url, keyprefix, redis_url, set_as_current=False)
    try:
        # Celery sends, a celeriac worker runs and stores, Celery's AsyncResult.get() reads
        workers.celeriac("-c", "2", "-Q", "celery", **backend)
        sent = celery_app.send_task(ADD, [2, 3])
        result_keys.append(sent.id)
        assert sent.get(timeout=15) == 5
        assert sent.state == "SUCCESS"
        assert celeriac_app.AsyncResult(sent.id).get(timeout=5) == 5

        # celeriac sends to another queue, a Celery worker runs and stores, celeriac reads
        workers.celery("-c", "1", "-P", "prefork", "-Q", "to-celery", **backend)
        back = celeriac_app.tasks[ADD].apply_async([20, 22], queue="to-celery")
        result_keys.append(back.id)
        assert back.get(timeout=15) == 42
        assert celery_app.AsyncResult(back.id).get(timeout=5) == 42
        assert [(e["side"], e["id"]) for e in runs.entries()] == [("celeriac", sent.id), ("celery", back.id)]
    finally:
        celeriac_app.close()
        celery_app.close()


def test_celeriac_monitor_watches_a_plain_celery_deployment(celery_app, celeriac_app, workers):
    monitor_watches_a_plain_celery_deployment(celery_app, celeriac_app, workers)
