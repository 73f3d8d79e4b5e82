"""The master's respawn backoff: children that keep dying before running a task are
restarted ever more slowly, even when each one got as far as saying it was ready."""

from __future__ import annotations

import time

import pytest

from celeriac.observe.records import ExitReason
from celeriac.worker.master import QUICK_DEATH_S, ChildProcess, Master
from celeriac.worker.slots import SlotView


def _view(done: int) -> SlotView:
    return SlotView(done, False, False, 0.0, 0.0, 0.0, done, 0, "", "", "", 0)


def _exit(master: Master, reason: ExitReason, done: int, lifetime: float, ready: bool = True) -> float:
    """A child starts (and says it is ready), then exits: the delay of its replacement."""
    child = ChildProcess(0, 4242, -1, time.monotonic())
    if ready:
        master._child_ready(child)
    master._schedule_respawn(child, reason, _view(done), lifetime)
    return master.respawn_at.pop(0) - time.monotonic()


def test_children_that_die_on_their_first_message_back_off_although_each_was_ready(master):
    delays = [_exit(master, ExitReason.CRASHED, 0, 0.01) for _ in range(5)]
    assert delays[0] <= 0.01
    assert delays[2] > 0.4
    assert delays[4] > delays[3] > delays[2]


@pytest.mark.parametrize("reason", [ExitReason.CRASHED, ExitReason.KILLED])
def test_a_child_that_ran_a_task_or_lived_on_ends_the_backoff(master, reason):
    for _ in range(4):
        _exit(master, reason, 0, 0.01)
    assert _exit(master, reason, 1, 0.01) <= 0.01  # ran a task
    for _ in range(4):
        _exit(master, reason, 0, 0.01)
    assert _exit(master, reason, 0, QUICK_DEATH_S + 1) <= 0.01  # lived long enough
    assert _exit(master, reason, 0, 0.01) <= 0.01  # a new run of quick deaths starts from 0


def test_children_that_die_before_ready_back_off(master):
    delays = [_exit(master, ExitReason.CRASHED, 0, 0.01, ready=False) for _ in range(4)]
    assert delays[3] > delays[2] > 0
