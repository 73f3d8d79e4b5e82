"""Shared memory between the master and its children: one slot per child.

A child writes what it is running into its slot (plain memory writes, no system
call on the hot path); the master reads the slots to enforce time limits, to
know which task a dead child was running, and for statistics.

Layout of a slot (little-endian, fixed size):

=============  ======  ======================================================
field          type    meaning
=============  ======  ======================================================
gen            u64     seqlock: odd while the child writes, even when consistent
seq            u64     tasks started by this child
running        u8      1 while a task runs
acks_late      u8      1 if the running task acks late
started        f64     monotonic time the running task started
soft_deadline  f64     monotonic soft time limit (0: none)
hard_deadline  f64     monotonic hard time limit (0: none)
done           u64     tasks finished
failed         u64     tasks that raised
tag            64s     broker ack tag of the running message
task_id        64s     id of the running task
name           192s    name of the running task
soft_sent      u64     written by the master: seq it sent the soft-limit signal for
unwritten      u32     how many entries of the ledger below are in use
=============  ======  ======================================================

After this header (:data:`HEADER_SIZE` bytes) comes the slot's *ledger* of
unwritten results: :data:`UNWRITTEN_MAX` entries of ``task_id`` (64s) and ``name``
(192s). Under early ack a task's message is settled before the task runs, and its
result is written with the next batch; in between, the ledger is the only record
that the task ended. The child appends an entry as the task ends (the entry first,
then the count) and empties the ledger once the batch is written; a child that
dies in between leaves the master the list of tasks whose results were lost with
it. A child writes its results before the ledger is full.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass

_GEN = struct.Struct("<Q")
_BODY = struct.Struct("<QBB6xdddQQ64s64s192s")
_SOFT = struct.Struct("<Q")
_COUNT = struct.Struct("<I")
_ENTRY = struct.Struct("<64s192s")
_BODY_AT = _GEN.size
_SOFT_AT = _BODY_AT + _BODY.size
_COUNT_AT = _SOFT_AT + _SOFT.size
HEADER_SIZE = 512
#: Ended tasks whose results a child may keep unwritten (the size of its ledger).
UNWRITTEN_MAX = 256
SLOT_SIZE = HEADER_SIZE + UNWRITTEN_MAX * _ENTRY.size
_SPINS = 50
_READ_ATTEMPTS = 250
_PAUSE_S = 0.0001
assert _COUNT_AT + _COUNT.size <= HEADER_SIZE


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class SlotView:
    """A consistent reading of one slot."""

    seq: int
    running: bool
    acks_late: bool
    started: float
    soft_deadline: float
    hard_deadline: float
    done: int
    failed: int
    tag: str
    task_id: str
    name: str
    soft_sent: int


class Slot:
    """One child's slot in the shared mapping."""

    def __init__(self, buffer: mmap.mmap, index: int) -> None:
        self._buf = buffer
        self._at = index * SLOT_SIZE
        self._gen = 0
        self._seq = 0
        self._done = 0
        self._failed = 0
        self._unwritten = 0
        #: the running task's id and name, as stored
        self._task_id = self._name = b""

    def reset(self) -> None:
        """Zero the slot (the master does this before forking a new child into it). The
        ledger's entries are left as they are: its count says none is in use."""
        self._buf[self._at : self._at + HEADER_SIZE] = b"\0" * HEADER_SIZE
        self._gen = self._seq = self._done = self._failed = self._unwritten = 0

    # -- child side -------------------------------------------------------------------------

    def _write(
        self,
        running: int,
        acks_late: int,
        started: float,
        soft: float,
        hard: float,
        tag: bytes,
        task_id: bytes,
        name: bytes,
    ) -> None:
        at = self._at
        self._gen += 1
        _GEN.pack_into(self._buf, at, self._gen)
        _BODY.pack_into(
            self._buf,
            at + _BODY_AT,
            self._seq,
            running,
            acks_late,
            started,
            soft,
            hard,
            self._done,
            self._failed,
            tag,
            task_id,
            name,
        )
        self._gen += 1
        _GEN.pack_into(self._buf, at, self._gen)

    def start(
        self, tag: str, task_id: str, name: str, acks_late: bool, started: float, soft: float, hard: float
    ) -> int:
        """Record that a task starts; returns its sequence number."""
        self._seq += 1
        self._task_id = task_id.encode()[:64]
        self._name = name.encode()[:192]
        self._write(1, int(acks_late), started, soft, hard, tag.encode()[:64], self._task_id, self._name)
        return self._seq

    def finish(self, failed: bool, unwritten: bool = False) -> None:
        """Record that the running task ended; ``unwritten``: its result waits for the next
        batch and its message is settled already, so the ledger keeps it until
        :meth:`written`."""
        if unwritten:
            count = self._unwritten
            assert count < UNWRITTEN_MAX, "write the results before the ledger is full"
            entry_at = self._at + HEADER_SIZE + count * _ENTRY.size
            _ENTRY.pack_into(self._buf, entry_at, self._task_id, self._name)
            self._unwritten = count + 1
            _COUNT.pack_into(self._buf, self._at + _COUNT_AT, count + 1)
        self._done += 1
        self._failed += failed
        self._write(0, 0, 0.0, 0.0, 0.0, b"", b"", b"")

    def written(self) -> None:
        """The results of the tasks in the ledger are written: empty it."""
        if self._unwritten:
            self._unwritten = 0
            _COUNT.pack_into(self._buf, self._at + _COUNT_AT, 0)

    @property
    def ledger_full(self) -> bool:
        """True when no more unwritten result fits: the child must write its results first."""
        return self._unwritten >= UNWRITTEN_MAX

    def abandon(self) -> None:
        """The task recorded by :meth:`start` did not start after all (its early ack failed)."""
        self._write(0, 0, 0.0, 0.0, 0.0, b"", b"", b"")

    @property
    def seq(self) -> int:
        """Tasks started by this child (child side)."""
        return self._seq

    @property
    def done(self) -> int:
        """Tasks finished by this child (child side)."""
        return self._done

    # -- master side ------------------------------------------------------------------------

    def read(self, writer_alive: bool = True) -> SlotView:
        """A consistent snapshot.

        While the child is mid-write the read is retried, yielding the CPU (the
        child may have been preempted between its two generation stores). If the
        child died mid-write (``writer_alive=False``) the slot is read as it is.
        """
        at = self._at
        body = _BODY.unpack_from(self._buf, at + _BODY_AT)
        for attempt in range(_READ_ATTEMPTS if writer_alive else 1):
            before = _GEN.unpack_from(self._buf, at)[0]
            if before % 2 == 0:
                body = _BODY.unpack_from(self._buf, at + _BODY_AT)
                if _GEN.unpack_from(self._buf, at)[0] == before:
                    break
            if attempt >= _SPINS:
                time.sleep(_PAUSE_S)
        seq, running, acks_late, started, soft, hard, done, failed, tag, task_id, name = body
        soft_sent = _SOFT.unpack_from(self._buf, at + _SOFT_AT)[0]
        return SlotView(
            seq,
            bool(running),
            bool(acks_late),
            started,
            soft,
            hard,
            done,
            failed,
            _text(tag),
            _text(task_id),
            _text(name),
            soft_sent,
        )

    def unwritten(self) -> list[tuple[str, str]]:
        """(task id, name) of the ended tasks in the ledger, oldest first: read after the
        child died, the tasks whose results were lost with it."""
        at = self._at + HEADER_SIZE
        count = min(_COUNT.unpack_from(self._buf, self._at + _COUNT_AT)[0], UNWRITTEN_MAX)
        entries = (_ENTRY.unpack_from(self._buf, at + i * _ENTRY.size) for i in range(count))
        return [(_text(task_id), _text(name)) for task_id, name in entries]

    def mark_soft_sent(self, seq: int) -> None:
        """The master sent the soft-limit signal for task number ``seq``."""
        _SOFT.pack_into(self._buf, self._at + _SOFT_AT, seq)

    def soft_sent(self) -> int:
        """Child side: the task number the master signalled."""
        return _SOFT.unpack_from(self._buf, self._at + _SOFT_AT)[0]


class SlotTable:
    """The shared mapping: one slot per child index, inherited over fork."""

    def __init__(self, count: int) -> None:
        self._buf = mmap.mmap(-1, max(1, count) * SLOT_SIZE)
        self.slots = [Slot(self._buf, i) for i in range(count)]

    def __getitem__(self, index: int) -> Slot:
        return self.slots[index]
