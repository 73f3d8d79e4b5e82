"""The event pipe's messages: round trip, the exact bytes, and lines that are refused."""

from __future__ import annotations

import logging
import os
import time

import orjson
import pytest

from celeriac.errors import ProtocolError
from celeriac.observe.records import ExitReason, SlotCounts
from celeriac.states import FAILURE, SUCCESS
from celeriac.worker.master import ChildProcess, Master
from celeriac.worker.memory import TaskTally
from celeriac.worker.options import WorkerOptions
from celeriac.worker.pipe import Exit, PipeMessageError, Ready, Report, decode, encode
from celeriac.worker.runstats import RunCounts


def _tally() -> dict:
    tally = TaskTally()
    tally.add("tasks.add", 0.125, 512, 64)
    tally.add("tasks.add", 0.25)
    return tally.flush()


def _runs() -> list:
    runs = RunCounts()
    for _ in range(3):
        runs.add("celery", "tasks.add", SUCCESS, 0.002)
    return runs.flush()


TALLY, RUNS = _tally(), _runs()

MESSAGES = [
    Ready(pid=4242, setup_s=0.031),
    Report(tasks=TALLY, runs=RUNS, window=4, counted_at=1_800_000_000.25),
    Report(tasks={}, runs=[], window=1, counted_at=1_800_000_001),
    Exit(
        ExitReason.MAX_TASKS, "ran 3 tasks (worker_max_tasks_per_child=3)", "tasks.add", 0.5, TALLY, RUNS, 1.5
    ),
    Exit(ExitReason.SHUTDOWN, "warm shutdown", None, 0.0, {}, [], 2.0),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    assert decode(encode(message)) == message
    assert decode(encode(message).rstrip(b"\n")) == message


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_encoded_message_is_one_line_ending_in_a_newline(message):
    line = encode(message)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1


def test_wire_form_is_the_json_object_the_child_always_wrote():
    """The master and anything reading a captured pipe see the same bytes as before the types."""
    assert encode(Ready(7, 0.5)) == b'{"event":"ready","pid":7,"setup_s":0.5}\n'
    assert (
        encode(Report(TALLY, RUNS, 4, 12.5))
        == orjson.dumps({"event": "report", "tasks": TALLY, "runs": RUNS, "window": 4, "counted_at": 12.5})
        + b"\n"
    )
    exit_ = Exit(ExitReason.MAX_MEMORY, "over", "tasks.add", 1.5, TALLY, RUNS, 13.0)
    assert (
        encode(exit_)
        == orjson.dumps(
            {
                "event": "exit",
                "reason": "max-memory",
                "detail": "over",
                "task": "tasks.add",
                "busy_s": 1.5,
                "tasks": TALLY,
                "runs": RUNS,
                "counted_at": 13.0,
            }
        )
        + b"\n"
    )


def test_decoded_exit_reason_is_the_enum_and_numbers_are_floats():
    message = decode(
        b'{"event":"exit","reason":"crashed","detail":"d","task":null,"busy_s":0,"tasks":{},"runs":[],'
        b'"counted_at":2}'
    )
    assert message == Exit(ExitReason.CRASHED, "d", None, 0.0, {}, [], 2.0)
    assert message.reason is ExitReason.CRASHED
    assert isinstance(message.busy_s, float) and isinstance(message.counted_at, float)


def test_extra_members_are_ignored():
    assert decode(b'{"event":"ready","pid":1,"setup_s":0.1,"later":true}') == Ready(1, 0.1)


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\xff garbage", id="garbage"),
        pytest.param(b'{"event":"ready","pid":1', id="half a line"),
        pytest.param(b'["ready", 1, 0.1]', id="array"),
        pytest.param(b'"ready"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"pid":1,"setup_s":0.1}', id="no kind"),
        pytest.param(b'{"event":"hello","pid":1}', id="unknown kind"),
        pytest.param(b'{"event":7}', id="kind not a string"),
        pytest.param(b'{"event":"ready","pid":1}', id="missing field"),
        pytest.param(b'{"event":"report","tasks":{},"runs":[]}', id="missing window"),
        pytest.param(b'{"event":"report","tasks":{},"runs":[],"window":4}', id="report without its time"),
        pytest.param(
            b'{"event":"report","tasks":{},"runs":[],"window":4,"counted_at":"now"}', id="time not a number"
        ),
        pytest.param(
            b'{"event":"exit","reason":"max-tasks","task":null,"busy_s":0,"tasks":{},"runs":[]}',
            id="exit without detail",
        ),
        pytest.param(b'{"event":"ready","pid":"1","setup_s":0.1}', id="wrong type"),
        pytest.param(b'{"event":"ready","pid":true,"setup_s":0.1}', id="bool for int"),
        pytest.param(b'{"event":"report","tasks":[],"runs":[],"window":4}', id="tasks not an object"),
        pytest.param(
            b'{"event":"exit","reason":"bored","detail":"","task":null,"busy_s":0,"tasks":{},"runs":[]}',
            id="unknown exit reason",
        ),
    ],
)
def test_unreadable_lines_raise(line):
    with pytest.raises(PipeMessageError):
        decode(line)


def test_error_is_a_value_error_and_a_protocol_error():
    with pytest.raises(ValueError, match="unknown kind"):
        decode(b'{"event":"hello"}')
    assert issubclass(PipeMessageError, ProtocolError)


def test_messages_are_frozen():
    with pytest.raises(AttributeError):
        Ready(1, 0.1).pid = 2  # type: ignore[misc]


# -- the reading side: the master's buffering ---------------------------------------------------


@pytest.fixture
def master_and_child(app):
    master = Master(app, WorkerOptions.from_app(app))
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    child = ChildProcess(0, 4242, read_fd, time.monotonic())
    yield master, child, write_fd
    for fd in (read_fd, write_fd, master.control.wake_r, master.control.wake_w):
        os.close(fd)


def test_master_reads_a_message_split_across_reads(master_and_child):
    master, child, write_fd = master_and_child
    line = encode(Report(TALLY, RUNS, 4, 10.0)) + encode(
        Exit(ExitReason.SHUTDOWN, "warm shutdown", "tasks.add", 0.5, {}, [], 11.0)
    )
    os.write(write_fd, line[:10])
    master._read_events(child)
    assert child.prefetch is None  # half a line: nothing yet
    os.write(write_fd, line[10:-7])
    master._read_events(child)
    assert child.prefetch == 4
    assert child.exit_event is None
    os.write(write_fd, line[-7:])
    master._read_events(child)
    assert child.exit_event == Exit(ExitReason.SHUTDOWN, "warm shutdown", "tasks.add", 0.5, {}, [], 11.0)
    assert [(r.queue, r.task, r.succeeded) for r in master.runs.records()] == [("celery", "tasks.add", 3)]
    assert master.memory.book.rows["tasks.add"] == TALLY["tasks.add"]


def test_master_logs_an_unreadable_line_and_reads_on(master_and_child, caplog):
    master, child, write_fd = master_and_child
    os.write(write_fd, b'{"event":"hello"}\nnot json\n' + encode(Ready(4242, 0.01)))
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        master._read_events(child)
    assert child.ready_at is not None
    assert [r.getMessage() for r in caplog.records] == [
        'child 0 sent an unreadable event: b\'{"event":"hello"}\'',
        "child 0 sent an unreadable event: b'not json'",
    ]


def _runs_of(**per_queue: int) -> list:
    runs = RunCounts()
    for queue, n in per_queue.items():
        for i in range(n):
            runs.add(queue, "tasks.add", SUCCESS if i % 2 else FAILURE, 0.002)
    return runs.flush()


def _slot(master: Master, index: int = 0) -> SlotCounts:
    (slot,) = [s for s in master.stats().counted if s.index == index]
    return slot


def test_the_heartbeat_counts_a_slots_runs_at_the_time_its_children_counted_them(master_and_child):
    master, child, write_fd = master_and_child
    master.by_index[0] = child
    before = time.time()
    os.write(
        write_fd,
        encode(Report({}, _runs_of(celery=3, thumbs=2), 4, before - 20.0))
        + encode(
            Exit(ExitReason.MAX_TASKS, "ran 5", "tasks.add", 0.5, {}, _runs_of(celery=1), before - 10.0)
        ),
    )
    master._read_events(child)
    # any outcome counts; as of the exit's count, while the child is still the slot's
    assert _slot(master) == SlotCounts(0, before - 10.0, {"celery": 4, "thumbs": 2})
    del master.by_index[0]  # reaped: nothing more can finish in the slot, so its count is true now
    ahead = time.time()
    first = _slot(master)
    assert ahead <= first.at <= time.time()
    assert first.finished == {"celery": 4, "thumbs": 2}
    assert _slot(master).at >= first.at  # and stays true as time goes on
    # the replacement carries the slot's count on: a rate over the recycle is not thrown off
    read_fd, write_fd2 = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        second = ChildProcess(0, 4243, read_fd, time.monotonic())
        master.by_index[0] = second
        counted_at = time.time() + 1.0
        os.write(write_fd2, encode(Ready(4243, 0.01)) + encode(Report({}, _runs_of(celery=5), 4, counted_at)))
        master._read_events(second)
        assert _slot(master) == SlotCounts(0, counted_at, {"celery": 9, "thumbs": 2})
        # an idle report moves the time on, not the count
        os.write(write_fd2, encode(Report({}, [], 4, counted_at + 1.0)))
        master._read_events(second)
        assert _slot(master) == SlotCounts(0, counted_at + 1.0, {"celery": 9, "thumbs": 2})
    finally:
        os.close(read_fd)
        os.close(write_fd2)
