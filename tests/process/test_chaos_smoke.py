"""A few fault-injection scenarios on every test run (``make chaos`` runs them all).

The scenarios run real workers on an SQLite broker, inject their fault, and hold the
outcome to the promise in docs/guarantees.md; the checker itself is tested on a
hand-written ledger, so a task that vanished is reported, not passed over.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos import ledger
from chaos.__main__ import judge, run_one
from chaos.brokers import SQLiteSetup
from chaos.check import Records, outcome
from chaos.run import Run
from chaos.scenarios import BY_NAME

pytestmark = pytest.mark.process


@pytest.mark.parametrize(
    ("name", "acks"),
    [("child-kill", "early"), ("child-kill", "late"), ("poison", "late"), ("bad-input", "early")],
)
def test_scenario_keeps_its_promise(name: str, acks: str, tmp_path: Path) -> None:
    row = run_one(BY_NAME[name], SQLiteSetup(), acks, tmp_path)
    assert row.verdict == "pass", row.detail
    assert row.out is not None and row.out.confirmed > 0
    # every task has a final record: none is left PENDING (a task killed just after it ended
    # may be both in "ran" and recorded as FAILURE: its return value died with its child)
    recorded = row.out.recorded
    assert recorded["SUCCESS"] + recorded["FAILURE"] + recorded["dead letter"] == row.out.confirmed


def _ledger(path: Path, lines: list[tuple[str, str]]) -> None:
    for kind, task_id in lines:
        ledger.write(path, kind, task_id)


def test_checker_reports_a_vanished_task_and_a_double_run(tmp_path: Path) -> None:
    run = Run("unit", SQLiteSetup(), "early", tmp_path)
    _ledger(
        run.ledger,
        [
            ("sent", "ok"), ("start", "ok"), ("end", "ok"),
            ("sent", "gone"), ("start", "gone"),  # started, never ended, nothing recorded
            ("sent", "twice"), ("start", "twice"), ("start", "twice"), ("end", "twice"),
            ("sent", "failed"), ("start", "failed"),  # recorded as FAILURE: not lost
            ("failed", "maybe"), ("start", "maybe"), ("end", "maybe"),  # the send raised, yet it ran
            ("start", "stray"),  # never sent at all
        ],
    )  # fmt: skip
    records = Records(results={"ok": "SUCCESS", "gone": "PENDING", "twice": "SUCCESS", "failed": "FAILURE"})
    out = outcome(run.ledger, records)
    assert (out.confirmed, out.ran) == (4, 2)
    assert out.lost == ["gone"]
    assert out.duplicated == ["twice"]
    assert out.unexpected == ["maybe"]
    assert out.never_sent == ["stray"]
    verdict, detail = judge(BY_NAME["baseline"], run, out)
    assert verdict == "FAIL"
    assert "1 lost" in detail and "ran twice" in detail and "never sent" in detail
    late = Run("unit", SQLiteSetup(), "late", tmp_path / "late")
    assert "ran twice" not in judge(BY_NAME["baseline"], late, out)[1]
