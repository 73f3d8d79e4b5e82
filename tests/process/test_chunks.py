"""``Task.chunks`` on real worker processes and the embedded SQLite broker."""

from __future__ import annotations

import pytest

from celeriac.canvas.chunks import STARMAP
from celeriac.errors import NotRegisteredError

pytestmark = pytest.mark.process


def test_a_hundred_calls_in_chunks_of_ten_run_once_each_one_chunk_per_child(app, workers, runs):
    result = app.tasks["run"].chunks(((f"c{i}",) for i in range(100)), 10).apply_async()
    assert len(result) == 10
    assert app.broker.queue_length("celery").total == 10, "one message per chunk"

    workers("-c", "2").wait_ready(2)
    pids = result.get(timeout=30)

    assert len(pids) == 10
    assert [len(chunk) for chunk in pids] == [10] * 10
    assert all(len(set(chunk)) == 1 for chunk in pids), "a chunk runs in one child"
    assert runs.per_label() == {f"c{i}": 1 for i in range(100)}
    # the calls of each chunk ran in order, in the child that returned them
    for index, chunk in enumerate(pids):
        labels = [f"c{i}" for i in range(index * 10, index * 10 + 10)]
        assert [runs.pids(label)[0] for label in labels] == chunk


def test_recycling_after_every_task_gives_each_chunk_a_fresh_child(app, workers, runs):
    result = app.tasks["run"].chunks([(f"r{i}",) for i in range(50)], 10).apply_async()
    workers("-c", "1", "--max-tasks-per-child", "1", "--prefetch-multiplier", "1").wait_ready(1)
    pids = result.get(timeout=30)
    assert len({chunk[0] for chunk in pids}) == 5, "each chunk ran in its own child"
    assert runs.count() == 50


def test_chunks_sent_to_a_queue_run_on_the_worker_that_consumes_it(app, workers, runs):
    result = app.tasks["run"].chunks([(f"q{i}",) for i in range(6)], 4).apply_async(queue="other")
    assert app.broker.queue_length("other").total == 2
    assert app.broker.queue_length("celery").total == 0
    workers("-c", "1", "-Q", "other").wait_ready(1)
    assert [len(chunk) for chunk in result.get(timeout=30)] == [4, 2]
    assert runs.count() == 6


def test_a_chunk_of_an_unknown_task_fails_naming_it_and_the_known_tasks(app, workers, runs):
    workers("-c", "1").wait_ready(1)
    sent = app.send_task(STARMAP, (), {"task": {"task": "proj.nowhere"}, "it": [["x"]]})
    with pytest.raises(NotRegisteredError) as info:
        sent.get(timeout=30)
    message = str(info.value)
    assert "'proj.nowhere' is not registered" in message
    assert "run" in message and STARMAP not in message
    assert runs.count() == 0
