"""Celery's signals in a real worker: each reaches the receivers of the task module, in the
process Celery sends it in (the master or a child), with Celery's sender and arguments."""

from __future__ import annotations

import json
import signal
import socket
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celeriac
from celeriac.states import FAILURE, REVOKED, SUCCESS
from tests.process.harness import wait_until

MASTER_SIGNALS = (
    "setup_logging",
    "import_modules",
    "celeryd_init",
    "worker_init",
    "celeryd_after_setup",
    "worker_ready",
    "worker_shutting_down",
    "worker_shutdown",
)


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def producer(env: dict[str, str]):
    """A plain app on the worker's broker: sends by name, sets no receiver in this process."""
    app = Celeriac("producer", broker=env["CELERIAC_BROKER_URL"], set_as_current=False)
    yield app
    app.close()


def test_signals_reach_receivers_in_the_master_and_the_children(workers, producer, tmp_path):
    path = tmp_path / "signals.jsonl"
    worker = workers("-A", "signals_app", "-c", "2", proc_signals=str(path)).wait_ready(2)
    add = producer.send_task("signals.add", (2, 3))
    failing = producer.send_task("signals.fail", ("bad",))
    flaky = producer.send_task("signals.flaky")
    boom = producer.send_task("signals.boom")
    expired = producer.send_task("signals.add", (0, 0), expires=-1)
    unknown = producer.send_task("signals.nope")
    assert add.get(timeout=20) == 5
    assert flaky.get(timeout=20) == "retried"
    assert boom.get(timeout=20) == "fine"  # its task_prerun receiver raised
    for result, state in ((failing, FAILURE), (expired, REVOKED), (unknown, FAILURE)):
        wait_until(lambda r=result, s=state: r.state == s, 20, f"{result.id} in {state}")
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0

    events = read_events(path)
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_name[event["signal"]].append(event)
    master, children = worker.pid, worker.child_pids
    assert len(children) == 2
    nodename = f"celeriac@{socket.gethostname()}"

    # the master's lifecycle, once each, in Celery's order
    master_order = [e["signal"] for e in events if e["signal"] in MASTER_SIGNALS]
    assert master_order == list(MASTER_SIGNALS)
    assert all(e["pid"] == master for name in MASTER_SIGNALS for e in by_name[name])
    [init] = by_name["celeryd_init"]
    assert init["sender"] == init["instance_hostname"] == nodename
    assert init["instance_app"] and init["conf"] and init["concurrency"] == 2
    assert by_name["import_modules"][0]["sender"] == "app:signals_app"
    [worker_init] = by_name["worker_init"]
    assert worker_init["sender"] == f"Master:{nodename}" and worker_init["app"] is True
    assert by_name["celeryd_after_setup"][0]["instance"] == f"Master:{nodename}"
    assert by_name["worker_ready"][0]["sender"] == f"Master:{nodename}"
    [stopping] = by_name["worker_shutting_down"]
    assert (stopping["sender"], stopping["sig"], stopping["how"], stopping["exitcode"]) == (
        nodename,
        "SIGTERM",
        "Warm",
        0,
    )

    # the setup_logging receiver configured logging; celeriac did not
    assert by_name["setup_logging"][0]["loglevel"] == 20
    assert worker.wait_for(r"^SIGLOG WARNING .* ready: 2 children")

    # each child is forked after worker_before_create_process, starts and exits through the receivers
    forks = by_name["worker_before_create_process"]
    assert [(e["pid"], e["sender"]) for e in forks] == [(master, f"Master:{nodename}")] * 2
    assert sorted(e["pid"] for e in by_name["worker_process_init"]) == sorted(children)
    assert sorted(
        (e["pid"], e["child"], e["exitcode"]) for e in by_name["worker_process_shutdown"]
    ) == sorted((pid, pid, 0) for pid in children)

    # task signals: in the children, with the task as sender
    task_events = [e for e in events if e["signal"].startswith("task_")]
    assert task_events and all(e["pid"] in children for e in task_events)

    def of(name: str, task_id: str) -> list[dict[str, Any]]:
        return [e for e in by_name[name] if e.get("id") == task_id]

    [prerun] = of("task_prerun", add.id)
    assert prerun["sender"] == "task:signals.add" and prerun["task"] == "signals.add"
    assert (prerun["args"], prerun["kwargs"], prerun["request_id"]) == ([2, 3], {}, add.id)
    [postrun] = of("task_postrun", add.id)
    assert (postrun["state"], postrun["retval"]) == (SUCCESS, "5")
    assert {"signal": "task_success", "sender": "task:signals.add", "result": 5} in [
        {k: e[k] for k in ("signal", "sender", "result")} for e in by_name["task_success"]
    ]

    [failure] = of("task_failure", failing.id)
    assert failure["sender"] == "task:signals.fail" and failure["exception"] == "ValueError('bad')"
    assert "ValueError: bad" in failure["einfo"]
    assert [e["state"] for e in of("task_postrun", failing.id)] == [FAILURE]

    [retry] = of("task_retry", flaky.id)
    assert retry["sender"] == "task:signals.flaky" and retry["reason"] == "ConnectionError('first attempt')"
    # the retry is published from the child, through before_task_publish, whose header arrives
    [republished] = [e for e in by_name["before_task_publish"] if e["id"] == flaky.id]
    assert republished["pid"] in children and republished["sender"] == "signals.flaky"
    assert [e["header"] for e in of("task_prerun", flaky.id)] == [None, "injected"]
    # (the second attempt may end in the other child before the first attempt's postrun)
    assert sorted(e["state"] for e in of("task_postrun", flaky.id)) == ["RETRY", SUCCESS]
    assert republished["pid"] == of("task_prerun", flaky.id)[0]["pid"] == retry["pid"]

    # a raising receiver is logged with its traceback; the task ran and succeeded
    assert of("task_prerun", boom.id) and [e["state"] for e in of("task_postrun", boom.id)] == [SUCCESS]
    assert worker.wait_for(r"signal task_prerun: receiver .*broken_receiver.* raised RuntimeError")
    assert "RuntimeError: receiver bug" in worker.log()

    [revoked] = of("task_revoked", expired.id)
    assert revoked["sender"] == "task:signals.add" and revoked["expired"] is True
    assert of("task_prerun", expired.id) == []
    [not_registered] = [e for e in by_name["task_unknown"] if e["id"] == unknown.id]
    assert not_registered["name"] == "signals.nope" and not_registered["sender"] is None


def test_solo_sends_the_worker_lifecycle_and_task_signals_in_its_one_process(workers, producer, tmp_path):
    path = tmp_path / "signals.jsonl"
    worker = workers("-A", "signals_app", "-P", "solo", proc_signals=str(path))
    worker.wait_for(r"solo: serving in this process")
    assert producer.send_task("signals.add", (2, 3)).get(timeout=20) == 5
    worker.send(signal.SIGTERM)
    assert worker.wait_exit() == 0
    events = read_events(path)
    master_order = [e["signal"] for e in events if e["signal"] in MASTER_SIGNALS]
    assert master_order == list(MASTER_SIGNALS)
    task_signals = [e for e in events if e["signal"] in ("task_prerun", "task_success", "task_postrun")]
    assert [e["signal"] for e in task_signals] == ["task_prerun", "task_success", "task_postrun"]
    assert {e["pid"] for e in events} == {worker.pid}
