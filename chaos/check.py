"""What happened, from the ledger and from what celeriac recorded, and whether that keeps the promise.

For every task the producer sent:

- *confirmed*: its send returned;
- *ran*: its body ended at least once;
- *lost*: confirmed, never ended, and celeriac recorded neither a FAILURE (or REVOKED)
  result nor a dead letter for it: it vanished without a trace;
- *duplicated*: started more than once (run twice, whether or not a run finished);
- *unexpected*: started though its send was never confirmed (the send raised: an error
  on send may still mean queued) — or though it was never sent at all.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from celeriac import states
from celeriac.hooks import DeadLettered
from chaos.ledger import Entries

#: Result states that are a record of a task that did not complete.
RECORDED_FAILED = frozenset({states.FAILURE, states.REVOKED})


@dataclass
class Records:
    """What celeriac says: result states by task id and the ids in the dead letters."""

    results: dict[str, str] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    dead_letters: int = 0  # every letter in the run's queue, whether or not its task id could be read

    def recorded_failed(self, task_id: str) -> bool:
        return task_id in self.dead or self.results.get(task_id) in RECORDED_FAILED


@dataclass
class Outcome:
    confirmed: int
    ran: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    never_sent: list[str]
    recorded: Counter[str]
    dead_letters: int

    def recorded_text(self) -> str:
        order = [states.SUCCESS, states.FAILURE, states.REVOKED, "dead letter", states.PENDING]
        parts = [f"{self.recorded[key]} {key}" for key in order if self.recorded.get(key)]
        parts += [f"{n} {key}" for key, n in sorted(self.recorded.items()) if key not in order]
        return ", ".join(parts) or "-"


def settled(entries: Entries, records: Records) -> bool:
    """Every confirmed task ended, or celeriac recorded that it did not complete."""
    return all(entries.ends[i] or records.recorded_failed(i) for i in entries.sent)


def collect(app, queue: str, ids: list[str]) -> Records:
    """Read results and dead letters through ``app`` (retrying a broker that is coming back)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return _collect(app, queue, ids)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _collect(app, queue: str, ids: list[str]) -> Records:
    records = Records()
    backend = app.backend
    for task_id in ids:
        record = backend.get(task_id) if backend is not None else None
        records.results[task_id] = record.state if record is not None else states.PENDING
    letters = app.broker.dead_letters(limit=1_000_000, queue=queue)
    records.dead_letters = len(letters)
    for letter in letters:
        task_id = DeadLettered.of(letter).task_id
        if task_id:
            records.dead.add(task_id)
    return records


def outcome(ledger_path: Path, records: Records) -> Outcome:
    entries = Entries.read(ledger_path)
    confirmed = entries.sent
    recorded: Counter[str] = Counter()
    for task_id in confirmed:
        recorded[
            "dead letter" if task_id in records.dead else records.results.get(task_id, states.PENDING)
        ] += 1
    started = set(entries.starts)
    return Outcome(
        confirmed=len(confirmed),
        ran=sum(1 for i in confirmed if entries.ends[i]),
        lost=sorted(i for i in confirmed if not entries.ends[i] and not records.recorded_failed(i)),
        duplicated=sorted(i for i, n in entries.starts.items() if n > 1),
        unexpected=sorted(started & entries.failed),
        never_sent=sorted(started - confirmed - entries.failed),
        recorded=recorded,
        dead_letters=records.dead_letters,
    )
