"""``python -m chaos``: run every scenario on every broker in both ack modes and print the table.

``make chaos`` runs it with ``--write``, which puts the table into docs/guarantees.md, so
the promises published there are the ones this run measured.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chaos.brokers import SETUPS, Setup
from chaos.check import Outcome, collect, outcome, settled
from chaos.ledger import Entries
from chaos.run import Run
from chaos.scenarios import BY_NAME, SCENARIOS, Scenario
from tests.process.harness import ROOT

ACKS = ("early", "late")
DOCS = ROOT / "docs" / "guarantees.md"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"

#: Where a broker cannot keep the general promise, what it does instead, as documented in
#: docs/guarantees.md and the broker's page: (scenario, broker, acks) -> (what may be
#: non-zero, why). The row still fails if anything else goes wrong.
_NODE_LOST = (
    "RabbitMQ keeps nothing of a message acked at start, so the tasks a node was running "
    "when it died whole leave no record (rabbitmq.md, what a crash costs)"
)
_REPLICATION = (
    "Redis replicates asynchronously: writes the old master acknowledged just before it died "
    "can be missing on the new one (redis.md, Redis Sentinel)"
)
CAVEATS: dict[tuple[str, str, str], tuple[frozenset[str], str]] = {
    ("node-kill", "rabbitmq", "early"): (frozenset({"lost"}), _NODE_LOST),
    ("sentinel-failover", "redis", "early"): (frozenset({"lost", "duplicated"}), _REPLICATION),
    ("sentinel-failover", "redis", "late"): (frozenset({"lost"}), _REPLICATION),
}


@dataclass
class Row:
    scenario: Scenario
    broker: str
    acks: str
    out: Outcome | None
    verdict: str
    detail: str
    seconds: float


def judge(scenario: Scenario, run: Run, out: Outcome) -> tuple[str, str]:
    """``pass``, ``pass*`` (within a documented caveat) or ``FAIL``, and why."""
    problems: dict[str, str] = {}
    if out.lost:
        problems["lost"] = f"{len(out.lost)} lost (e.g. {out.lost[0]})"
    if run.acks == "early" and out.duplicated:
        problems["duplicated"] = f"{len(out.duplicated)} ran twice under early ack (e.g. {out.duplicated[0]})"
    if out.never_sent:
        problems["never_sent"] = f"{len(out.never_sent)} ran that were never sent"
    if out.dead_letters < run.dead_letters_expected:
        problems["dead_letters"] = (
            f"{out.dead_letters} of {run.dead_letters_expected} bad messages dead-lettered"
        )
    if not problems:
        return "pass", "; ".join(run.notes)
    allowed, why = CAVEATS.get((scenario.name, run.broker, run.acks), (frozenset(), ""))
    if set(problems) <= allowed:
        return "pass*", f"{'; '.join(problems.values())} — {why}"
    return "FAIL", "; ".join(problems.values())


def run_one(scenario: Scenario, setup: Setup, acks: str, directory: Path) -> Row:
    started = time.monotonic()
    run_dir = directory / f"{setup.name}-{scenario.name}-{acks}"
    run_dir.mkdir(parents=True)
    run = Run(scenario.name, setup, acks, run_dir)
    try:
        scenario.act(run)
        run.join_senders()
        if not any(node.alive() for node in run.nodes):
            run.node()
        deadline = time.monotonic() + scenario.settle
        while True:
            entries = Entries.read(run.ledger)
            waiting = [i for i in entries.sent if not entries.ends[i]]
            if settled(entries, collect(run.app, run.queue, waiting)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        out = outcome(run.ledger, collect(run.app, run.queue, run.ids))
        verdict, detail = judge(scenario, run, out)
    except Exception as exc:  # a scenario that could not run is a failure, with the reason
        out, verdict, detail = None, "FAIL", f"{type(exc).__name__}: {exc}"
    finally:
        for index, node in enumerate(run.nodes):
            (run_dir / f"node-{index}.log").write_text(node.log())
        run.close()
    return Row(scenario, setup.name, acks, out, verdict, detail, time.monotonic() - started)


def table(rows: list[Row]) -> str:
    columns = ("scenario", "broker", "acks", "confirmed", "ran", "lost", "duplicated", "unexpected")
    columns += ("celeriac recorded", "result")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out = row.out
        cells = (
            [
                str(out.confirmed),
                str(out.ran),
                str(len(out.lost)),
                str(len(out.duplicated)),
                str(len(out.unexpected)),
            ]
            if out
            else ["-"] * 5
        )
        recorded = out.recorded_text() if out else "-"
        if out and out.dead_letters:
            recorded += f"; {out.dead_letters} in the dead letters"
        result = row.verdict + (f": {row.detail}" if row.detail and row.verdict != "pass" else "")
        row_cells = [row.scenario.name, row.broker, row.acks, *cells, recorded, result]
        lines.append("| " + " | ".join(row_cells) + " |")
    return "\n".join(lines)


def write_docs(rows: list[Row], seconds: float) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOCS} has no {BEGIN} ... {END} markers to write the table between")
    machine = (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    faults = "\n".join(f"- **{s.name}**: {s.fault} ({', '.join(s.brokers)})" for s in SCENARIOS)
    block = (
        f"{BEGIN}\n"
        f"Measured by `make chaos` on {time.strftime('%Y-%m-%d')} ({machine}; {seconds / 60:.1f} min). "
        f"`pass*` = within a caveat this page states.\n\n{table(rows)}\n\nThe faults:\n\n{faults}\n{END}"
    )
    head, rest = text.split(BEGIN, 1)
    DOCS.write_text(head + block + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--brokers", default=",".join(SETUPS), help="comma-separated: sqlite,redis,rabbitmq")
    parser.add_argument("--scenarios", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--acks", default=",".join(ACKS), help="early, late or both")
    parser.add_argument("--write", action="store_true", help="write the table into docs/guarantees.md")
    parser.add_argument("--keep", type=Path, help="keep run directories (ledgers, node logs) here")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:18} {', '.join(s.brokers):24} {s.fault}")
        return 0
    brokers = [b for b in args.brokers.split(",") if b]
    acks = [a for a in args.acks.split(",") if a]
    names = [n for n in args.scenarios.split(",") if n]
    for what, given, known in (
        ("broker", brokers, SETUPS),
        ("ack mode", acks, ACKS),
        ("scenario", names, BY_NAME),
    ):
        unknown = [g for g in given if g not in known]
        if unknown:
            parser.error(f"unknown {what} {', '.join(unknown)}: choose from {', '.join(known)}")
    scenarios = [BY_NAME[n] for n in names] if names else list(SCENARIOS)
    if args.write and (names or len(brokers) < len(SETUPS) or len(acks) < len(ACKS)):
        parser.error("--write needs the whole table: every scenario, broker and ack mode")
    # a SIGTERM unwinds like Ctrl-C, so the private brokers and the workers are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # the producer's retries while a broker is down are expected; the workers' logs are kept
    logging.getLogger("celeriac").setLevel(logging.ERROR)
    directory = args.keep or Path(tempfile.mkdtemp(prefix="celeriac-chaos-"))
    directory.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    began = time.monotonic()
    for broker in brokers:
        setup = SETUPS[broker]()
        try:
            setup.open(directory / f"{broker}-server")
            for scenario in scenarios:
                if broker not in scenario.brokers:
                    continue
                for ack in acks:
                    row = run_one(scenario, setup, ack, directory)
                    rows.append(row)
                    where = f"{broker:8} {ack:5} {scenario.name:17}"
                    print(f"{row.seconds:6.1f}s {row.verdict:5} {where} {row.detail}", flush=True)
        finally:
            setup.close()
    seconds = time.monotonic() - began
    print(f"\n{table(rows)}\n\n{len(rows)} runs in {seconds / 60:.1f} min; logs and ledgers in {directory}")
    if args.write:
        write_docs(rows, seconds)
        print(f"table written into {DOCS.relative_to(ROOT)}")
    return 1 if any(row.verdict == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
