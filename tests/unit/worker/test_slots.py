"""Slots: what a child is running, shared with the master through one mapping."""

from __future__ import annotations

import pytest

from celeriac.worker.slots import SlotTable


@pytest.fixture
def table():
    return SlotTable(3)


def test_new_slot_reads_idle(table):
    view = table[0].read()
    assert (view.seq, view.running, view.done, view.failed, view.soft_sent) == (0, False, 0, 0, 0)
    assert (view.tag, view.task_id, view.name) == ("", "", "")


def test_start_is_visible_to_the_reader(table):
    slot = table[1]
    seq = slot.start("m:17", "task-id-1", "proj.tasks.add", True, 100.0, 110.0, 130.0)
    view = slot.read()
    assert seq == 1 == view.seq
    assert view.running is True
    assert view.acks_late is True
    assert (view.started, view.soft_deadline, view.hard_deadline) == (100.0, 110.0, 130.0)
    assert (view.tag, view.task_id, view.name) == ("m:17", "task-id-1", "proj.tasks.add")


def test_finish_clears_the_running_task_and_counts(table):
    slot = table[0]
    slot.start("m:1", "a", "t", False, 1.0, 0.0, 0.0)
    slot.finish(failed=False)
    slot.start("m:2", "b", "t", False, 2.0, 0.0, 0.0)
    slot.finish(failed=True)
    view = slot.read()
    assert (view.seq, view.done, view.failed) == (2, 2, 1)
    assert view.running is False
    assert (view.tag, view.task_id, view.name) == ("", "", "")
    assert (slot.seq, slot.done) == (2, 2)


def test_slots_do_not_overlap(table):
    table[0].start("m:a", "first", "t0", False, 1.0, 0.0, 0.0)
    table[2].start("m:b", "third", "t2", True, 2.0, 0.0, 0.0)
    assert table[0].read().task_id == "first"
    assert table[1].read().running is False
    assert table[2].read().task_id == "third"


def test_soft_sent_marks_which_task_was_signalled(table):
    slot = table[0]
    seq = slot.start("m:1", "a", "t", False, 1.0, 2.0, 0.0)
    assert slot.soft_sent() != seq
    slot.mark_soft_sent(seq)  # master side
    assert slot.soft_sent() == seq  # child side
    assert slot.read().soft_sent == seq
    # the next task is not the one that was signalled
    slot.finish(failed=False)
    assert slot.start("m:2", "b", "t", False, 3.0, 0.0, 0.0) != slot.soft_sent()


def test_soft_sent_survives_the_childs_writes(table):
    slot = table[0]
    slot.mark_soft_sent(5)
    slot.start("m:1", "a", "t", False, 1.0, 0.0, 0.0)
    slot.finish(failed=False)
    assert slot.read().soft_sent == 5


def test_long_values_are_cut_to_the_field_size(table):
    slot = table[0]
    slot.start("t" * 100, "i" * 100, "n" * 300, False, 1.0, 0.0, 0.0)
    view = slot.read()
    assert (len(view.tag), len(view.task_id), len(view.name)) == (64, 64, 192)


def test_reset_zeroes_the_slot(table):
    slot = table[0]
    slot.start("m:1", "a", "t", False, 1.0, 0.0, 0.0)
    slot.mark_soft_sent(1)
    slot.reset()
    view = slot.read()
    assert (view.seq, view.running, view.soft_sent, view.task_id) == (0, False, 0, "")
    assert slot.seq == 0


def test_a_dead_writer_s_slot_is_read_as_it_is(table):
    slot = table[0]
    slot.start("m:1", "a", "t", False, 1.0, 0.0, 0.0)
    assert slot.read(writer_alive=False).task_id == "a"


def test_the_ledger_lists_ended_tasks_until_their_results_are_written(table):
    slot = table[1]
    for task_id in ("a", "b", "c"):
        slot.start(f"m:{task_id}", task_id, f"proj.{task_id}", False, 1.0, 0.0, 0.0)
        slot.finish(failed=False, unwritten=task_id != "b")  # b's result is not the batch's
    assert table[1].unwritten() == [("a", "proj.a"), ("c", "proj.c")]
    assert table[0].unwritten() == table[2].unwritten() == []
    slot.written()
    assert slot.unwritten() == []
    slot.start("m:d", "d" * 100, "n" * 300, False, 2.0, 0.0, 0.0)
    slot.finish(failed=True, unwritten=True)
    assert slot.unwritten() == [("d" * 64, "n" * 192)]
    slot.reset()
    assert slot.unwritten() == []


def test_the_ledger_says_when_it_is_full(table, monkeypatch):
    monkeypatch.setattr("celeriac.worker.slots.UNWRITTEN_MAX", 2)
    slot = table[0]
    for task_id in ("a", "b"):
        assert not slot.ledger_full
        slot.start("m:1", task_id, "t", False, 1.0, 0.0, 0.0)
        slot.finish(failed=False, unwritten=True)
    assert slot.ledger_full
    slot.written()
    assert not slot.ledger_full
