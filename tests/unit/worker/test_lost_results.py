"""The master records the tasks of a dead child: under early ack, also those that had ended
with their results still waiting for the child's next batch of writes (the slot's ledger)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from celeriac.errors import WorkerLostError
from celeriac.results.base import PendingResult
from celeriac.states import FAILURE, SUCCESS
from celeriac.worker.master import ChildProcess, Master

KILLED = "killed by signal 9 (SIGKILL)"


def _ended(master: Master, *task_ids: str) -> None:
    """Child 0 ran these early-ack tasks; their results wait for its next batch."""
    slot = master.slots[0]
    for task_id in task_ids:
        slot.start(f"m:{task_id}", task_id, "proj.t", False, 1.0, 0.0, 0.0)
        slot.finish(failed=False, unwritten=True)


def test_ended_tasks_whose_results_died_with_the_child_fail_and_stored_results_stand(app, master):
    app.backend.store(PendingResult("written", SUCCESS, 42, None, "proj.t"))
    app.backend.store(PendingResult("raised", FAILURE, ValueError("its own"), None, "proj.t"))
    _ended(master, "written", "raised", "lost")  # killed just before the ledger was emptied
    child = ChildProcess(0, 4242, -1, time.monotonic())
    note = master._settle_unwritten(child, master.slots[0].read(writer_alive=False), KILLED)
    assert "3 task(s) had ended" in note and "proj.t[lost]" in note
    assert app.AsyncResult("written").get(timeout=1) == 42
    with pytest.raises(ValueError, match="its own"):
        app.AsyncResult("raised").get(timeout=1)
    with pytest.raises(WorkerLostError, match="after the task ended.*killed by signal 9"):
        app.AsyncResult("lost").get(timeout=1)


def test_a_task_still_seen_running_is_recorded_once_as_the_running_task(app, master):
    # killed between the ledger entry and the slot's running flag: the running task's settling
    # records it (WorkerLostError while running), the ledger adds nothing
    _ended(master, "earlier", "last")
    child = ChildProcess(0, 4242, -1, time.monotonic())
    view = dataclasses.replace(master.slots[0].read(writer_alive=False), running=True, task_id="last")
    note = master._settle_unwritten(child, view, KILLED)
    assert "1 task(s) had ended" in note and "[last]" not in note
    assert app.AsyncResult("earlier").state == FAILURE
    assert app.AsyncResult("last").state == "PENDING"


def test_a_child_that_wrote_its_results_leaves_nothing_to_record(app, master):
    _ended(master, "done")
    master.slots[0].written()
    child = ChildProcess(0, 4242, -1, time.monotonic())
    assert master._settle_unwritten(child, master.slots[0].read(writer_alive=False), KILLED) == ""
    assert app.AsyncResult("done").state == "PENDING"
