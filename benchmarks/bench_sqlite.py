#!/usr/bin/env python3
"""celeriac on its embedded SQLite broker, side by side with Huey on SqliteHuey.

    python3 benchmarks/bench_sqlite.py            # or: make bench

Runs in its own virtualenv, ``benchmarks/.venv`` (created on first use, with
celeriac installed editable from this checkout and the pinned peers of
``benchmarks/requirements.txt``; the script re-executes itself inside it), so
peers never become dependencies of celeriac.

Every figure is measured ``--runs`` times (default 3), celeriac and Huey
interleaved (celeriac run 1, Huey run 1, celeriac run 2, ...), each run on fresh
database files in a scratch directory on the filesystem of this checkout, and
the table shows the medians and the ratio celeriac / Huey. Both systems run two
worker processes and a no-op task that appends one byte to a file (``os.write``
on an ``O_APPEND`` descriptor opened once per process); the benchmark counts
completions by the file's size, with no per-task database round trip.

Measured:

1. enqueue, single calls: 2,000 x ``noop.delay()`` / a Huey task call, no worker running;
2. enqueue, 20,000 tasks: celeriac ``noop.apply_many([()] * 1000)`` x 20 (one transaction
   per call); Huey has no batch API, so its figure is 20,000 single calls in a loop;
3. drain: 20,000 tasks queued with the worker stopped; time from starting the worker
   to the 20,000th task body having run (start-up included, nothing subtracted), and the
   start-up alone (worker start to first task done);
4. idle-to-running latency: worker started and idle, one task sent, time from just before
   the send to the start of the task body (the body writes ``time.time()``); 50 samples
   with random 20-80 ms pauses; p50, p95 (nearest rank), max.

Variants: celeriac durable and transient (``Queue("transient", durable=False)``) queues,
early ack and ``task_acks_late``, results ignored (one row with results stored), the
default ``fsync: "publish"`` and ``fsync: "all"``, prefetch 4 (default) and ``auto``;
Huey ``SqliteHuey`` with ``fsync=True``, its default ``fsync=None`` and ``fsync=False``.
``benchmarks/RESULTS.md`` says what each configuration guarantees.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import shutil
import signal
import sqlite3
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    Figures,
    bootstrap,
    celeriac_source,
    clean_environ,
    cores,
    cpu_model,
    file_size,
    fmt,
    log_tail,
    mount_of,
    percentile,
    print_run_end,
    ram,
    raw,
    short,
    wait_for_size,
    worker,
)

APPS = BENCH_DIR / "sqlite_apps"

WORKERS = 2
#: Huey consumer polling: first wait 1 ms when the queue is empty, growing by x1.15
#: per empty poll up to 5 ms (celeriac's idle consumer looks every 5 ms).
HUEY_POLL = ("-d", "0.001", "-m", "0.005", "-b", "1.15")
DRAIN_TIMEOUT_S = 300.0
LATENCY_TIMEOUT_S = 10.0
_STAMP = struct.Struct("<d")


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One table row: a metric of a celeriac job against the same metric of a Huey job."""

    label: str
    unit: str
    celeriac: tuple[str, str]
    huey: tuple[str, str] | None = None
    note: str = ""


# -- configurations --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CeleriacConfig:
    queue: str = "celery"
    acks_late: bool = False
    store_results: bool = False
    prefetch: str | None = None
    fsync_all: bool = False

    def env(self) -> dict[str, str]:
        return {
            "BENCH_QUEUE": self.queue,
            "BENCH_ACKS_LATE": "1" if self.acks_late else "0",
            "BENCH_STORE_RESULTS": "1" if self.store_results else "0",
            "BENCH_FSYNC_ALL": "1" if self.fsync_all else "0",
        }


@dataclass(frozen=True, slots=True)
class HueyConfig:
    fsync: str  # "1" (fsync=True), "0" (fsync=False) or "default" (fsync=None)


DURABLE = CeleriacConfig()
DURABLE_LATE = CeleriacConfig(acks_late=True)
DURABLE_RESULTS = CeleriacConfig(store_results=True)
DURABLE_AUTO = CeleriacConfig(prefetch="auto")
DURABLE_LATE_AUTO = CeleriacConfig(acks_late=True, prefetch="auto")
DURABLE_FSYNC_ALL = CeleriacConfig(fsync_all=True)
TRANSIENT = CeleriacConfig(queue="transient")
TRANSIENT_LATE = CeleriacConfig(queue="transient", acks_late=True)
HUEY_FSYNC = HueyConfig("1")
HUEY_DEFAULT = HueyConfig("default")
HUEY_NOFSYNC = HueyConfig("0")


@dataclass(frozen=True, slots=True)
class Sizes:
    single: int = 2_000
    batch_size: int = 1_000
    drain: int = 20_000
    latency_samples: int = 50


# -- processes -------------------------------------------------------------------------------------


def celeriac_cmd(config: CeleriacConfig) -> list[str]:
    cmd = [sys.executable, "-m", "celeriac", "worker", "-A", "celeriac_app", "-c", str(WORKERS)]
    cmd += ["-Q", config.queue, "-l", "warning"]
    if config.prefetch is not None:
        cmd += ["--prefetch-multiplier", config.prefetch]
    return cmd


def huey_cmd() -> list[str]:
    consumer = str(Path(sys.executable).parent / "huey_consumer")
    return [consumer, "huey_app.huey", "-k", "process", "-w", str(WORKERS), *HUEY_POLL, "-n", "-q"]


@dataclass(slots=True)
class Run:
    """One job's scratch directory: database, completion files, worker environment."""

    dir: Path

    @property
    def db(self) -> Path:
        return self.dir / "bench.db"

    @property
    def done(self) -> Path:
        return self.dir / "done.bin"

    @property
    def stamps(self) -> Path:
        return self.dir / "stamps.bin"

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = clean_environ()
        env.update(extra)
        env["BENCH_DB"] = str(self.db)
        env["BENCH_DONE_FILE"] = str(self.done)
        env["BENCH_STAMP_FILE"] = str(self.stamps)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS), env.get("PYTHONPATH")]))
        return env


# -- the two systems behind one interface --------------------------------------------------------


class System:
    """What a measurement needs from a system: send tasks, start its worker."""

    name = ""

    def open(self, run: Run) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def send_one(self) -> None:
        raise NotImplementedError

    def send_stamp(self) -> None:
        raise NotImplementedError

    def send_many(self, total: int, batch: int) -> None:
        raise NotImplementedError

    def worker_cmd(self) -> list[str]:
        raise NotImplementedError

    def worker_env(self, run: Run) -> dict[str, str]:
        raise NotImplementedError


class Celeriac(System):
    name = "celeriac"

    def __init__(self, config: CeleriacConfig) -> None:
        self.config = config
        self.app: Any = None
        self.noop: Any = None
        self.stamp: Any = None

    def open(self, run: Run) -> None:
        from celeriac_app import make_app

        config = self.config
        self.app, self.noop, self.stamp = make_app(
            str(run.db), config.queue, config.acks_late, config.store_results, config.fsync_all
        )
        # connections opened and the queue declared outside the timed part
        self.app.broker.declare_queue(self.app.router.queue(config.queue))
        self.app.broker.queue_length(config.queue)

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
        self.app = None

    def send_one(self) -> None:
        self.noop.delay()

    def send_stamp(self) -> None:
        self.stamp.delay()

    def send_many(self, total: int, batch: int) -> None:
        calls = [()] * batch
        for _ in range(total // batch):
            self.noop.apply_many(calls)

    def worker_cmd(self) -> list[str]:
        return celeriac_cmd(self.config)

    def worker_env(self, run: Run) -> dict[str, str]:
        return run.env(self.config.env())


class Huey(System):
    name = "huey"

    def __init__(self, config: HueyConfig) -> None:
        self.config = config
        self.huey: Any = None
        self.noop: Any = None
        self.stamp: Any = None

    def open(self, run: Run) -> None:
        from huey_app import FSYNC, make_huey

        self.huey, self.noop, self.stamp = make_huey(str(run.db), FSYNC[self.config.fsync])
        self.huey.storage.queue_size()  # connection opened outside the timed part

    def close(self) -> None:
        if self.huey is not None:
            self.huey.storage.close()
        self.huey = None

    def send_one(self) -> None:
        self.noop()

    def send_stamp(self) -> None:
        self.stamp()

    def send_many(self, total: int, batch: int) -> None:
        noop = self.noop
        for _ in range(total):  # no batch API in Huey: single calls
            noop()

    def worker_cmd(self) -> list[str]:
        return huey_cmd()

    def worker_env(self, run: Run) -> dict[str, str]:
        return run.env({"BENCH_FSYNC": self.config.fsync})


@contextlib.contextmanager
def producer(system: System, run: Run) -> Iterator[System]:
    system.open(run)
    try:
        yield system
    finally:
        system.close()


# -- measurements ----------------------------------------------------------------------------------


def measure_enqueue_single(system: System, run: Run, sizes: Sizes) -> dict[str, float]:
    """``sizes.single`` single sends, no worker running: tasks/s."""
    with producer(system, run):
        started = time.perf_counter()
        for _ in range(sizes.single):
            system.send_one()
        elapsed = time.perf_counter() - started
    return {"enqueue_single": sizes.single / elapsed}


def measure_drain(system: System, run: Run, sizes: Sizes) -> dict[str, float]:
    """Queue ``sizes.drain`` tasks (timed: the 20,000-task enqueue figure), then start the worker and
    time it until every task body has run."""
    with producer(system, run):
        started = time.perf_counter()
        system.send_many(sizes.drain, sizes.batch_size)
        enqueue_s = time.perf_counter() - started
    with worker(system.worker_cmd(), system.worker_env(run), run.dir) as proc:
        spawned = time.perf_counter()
        try:
            first = wait_for_size(run.done, 1, proc, DRAIN_TIMEOUT_S, 0.001)
            last = wait_for_size(run.done, sizes.drain, proc, DRAIN_TIMEOUT_S, 0.001)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- worker log ---\n{log_tail(run.dir)}") from None
    extra = file_size(run.done) - sizes.drain
    if extra:
        print(f"  note: {extra} more task bodies ran than were sent (after the stop)", flush=True)
    return {
        "enqueue_batch": sizes.drain / enqueue_s,
        "drain": sizes.drain / (last - spawned),
        "startup_ms": (first - spawned) * 1000,
        "extra_runs": float(extra),
    }


def measure_latency(system: System, run: Run, sizes: Sizes, rng: random.Random) -> dict[str, float]:
    """Idle worker; one task at a time; send → task body start, in ms."""
    samples: list[float] = []
    with producer(system, run), worker(system.worker_cmd(), system.worker_env(run), run.dir) as proc:
        try:
            system.send_stamp()  # warm-up: the worker is up and has run a task
            wait_for_size(run.stamps, _STAMP.size, proc, 60.0, 0.001)
            time.sleep(0.2)
            for index in range(1, sizes.latency_samples + 1):
                time.sleep(rng.uniform(0.020, 0.080))
                sent = time.time()
                system.send_stamp()
                wait_for_size(run.stamps, (index + 1) * _STAMP.size, proc, LATENCY_TIMEOUT_S, 0.0002)
                with run.stamps.open("rb") as fh:
                    fh.seek(index * _STAMP.size)
                    (body_started,) = _STAMP.unpack(fh.read(_STAMP.size))
                samples.append((body_started - sent) * 1000)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- worker log ---\n{log_tail(run.dir)}") from None
    return {
        "latency_p50": percentile(samples, 50),
        "latency_p95": percentile(samples, 95),
        "latency_max": max(samples),
    }


# -- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    key: str
    system: Callable[[], System]
    measure: str  # "enqueue_single" | "drain" | "latency"


JOBS: tuple[Job, ...] = (
    # interleaved: each celeriac job is followed by the Huey job(s) it is compared with
    Job("c.enqueue.durable", lambda: Celeriac(DURABLE), "enqueue_single"),
    Job("h.enqueue.fsync", lambda: Huey(HUEY_FSYNC), "enqueue_single"),
    Job("h.enqueue.default", lambda: Huey(HUEY_DEFAULT), "enqueue_single"),
    Job("c.enqueue.transient", lambda: Celeriac(TRANSIENT), "enqueue_single"),
    Job("h.enqueue.nofsync", lambda: Huey(HUEY_NOFSYNC), "enqueue_single"),
    Job("c.drain.durable", lambda: Celeriac(DURABLE), "drain"),
    Job("h.drain.fsync", lambda: Huey(HUEY_FSYNC), "drain"),
    Job("c.drain.durable_fsync_all", lambda: Celeriac(DURABLE_FSYNC_ALL), "drain"),
    Job("c.drain.durable_late", lambda: Celeriac(DURABLE_LATE), "drain"),
    Job("h.drain.default", lambda: Huey(HUEY_DEFAULT), "drain"),
    Job("c.drain.transient", lambda: Celeriac(TRANSIENT), "drain"),
    Job("h.drain.nofsync", lambda: Huey(HUEY_NOFSYNC), "drain"),
    Job("c.drain.transient_late", lambda: Celeriac(TRANSIENT_LATE), "drain"),
    Job("c.drain.durable_results", lambda: Celeriac(DURABLE_RESULTS), "drain"),
    Job("c.drain.durable_auto", lambda: Celeriac(DURABLE_AUTO), "drain"),
    Job("c.drain.durable_late_auto", lambda: Celeriac(DURABLE_LATE_AUTO), "drain"),
    Job("c.latency.durable", lambda: Celeriac(DURABLE), "latency"),
    Job("h.latency.fsync", lambda: Huey(HUEY_FSYNC), "latency"),
    Job("c.latency.transient", lambda: Celeriac(TRANSIENT), "latency"),
    Job("h.latency.nofsync", lambda: Huey(HUEY_NOFSYNC), "latency"),
)

C_DUR, C_TRA = "celeriac durable", "celeriac transient"
H_FS, H_DEF, H_NOFS = "huey fsync=True", "huey default (fsync=None)", "huey fsync=False"


BATCH_NOTE = "celeriac apply_many x1000; huey single calls (no batch API)"
#: (celeriac label, celeriac job, huey job, huey label): the pairs compared in the enqueue rows.
ENQUEUE_PAIRS = (
    (C_DUR, "durable", "fsync", H_FS),
    (C_DUR, "durable", "default", H_DEF),
    (C_TRA, "transient", "nofsync", H_NOFS),
)
#: The same for the drain and start-up rows.
DRAIN_PAIRS = (
    (f"{C_DUR}, early ack", "durable", "fsync", H_FS),
    (f"{C_DUR}, acks_late", "durable_late", "fsync", H_FS),
    (f"{C_DUR}, early ack, fsync all", "durable_fsync_all", "fsync", H_FS),
    (f"{C_DUR}, early ack", "durable", "default", H_DEF),
    (f"{C_TRA}, early ack", "transient", "nofsync", H_NOFS),
    (f"{C_TRA}, acks_late", "transient_late", "nofsync", H_NOFS),
)
#: celeriac-only drain variants (no Huey counterpart).
DRAIN_ONLY = (
    (f"{C_DUR}, early ack, results stored", "durable_results"),
    (f"{C_DUR}, early ack, prefetch auto", "durable_auto"),
    (f"{C_DUR}, acks_late, prefetch auto", "durable_late_auto"),
)
LATENCY_PAIRS = ((C_DUR, "durable", "fsync", H_FS), (C_TRA, "transient", "nofsync", H_NOFS))


def rows(sizes: Sizes) -> list[Row]:
    """The table: which job's metric is compared with which."""
    out: list[Row] = []
    for c_label, c_job, h_job, h_label in ENQUEUE_PAIRS:
        out.append(
            Row(
                f"enqueue {sizes.single:,} single calls: {c_label} vs {h_label}",
                "tasks/s",
                (f"c.enqueue.{c_job}", "enqueue_single"),
                (f"h.enqueue.{h_job}", "enqueue_single"),
            )
        )
    for c_label, c_job, h_job, h_label in ENQUEUE_PAIRS:
        out.append(
            Row(
                f"enqueue {sizes.drain:,}: {c_label} vs {h_label}",
                "tasks/s",
                (f"c.drain.{c_job}", "enqueue_batch"),
                (f"h.drain.{h_job}", "enqueue_batch"),
                BATCH_NOTE,
            )
        )
    for metric, unit, what in (
        ("drain", "tasks/s", f"drain {sizes.drain:,}"),
        ("startup_ms", "ms", "start-up"),
    ):
        for c_label, c_job, h_job, h_label in DRAIN_PAIRS:
            out.append(
                Row(
                    f"{what}: {c_label} vs {h_label}",
                    unit,
                    (f"c.drain.{c_job}", metric),
                    (f"h.drain.{h_job}", metric),
                )
            )
        for c_label, c_job in DRAIN_ONLY:
            out.append(Row(f"{what}: {c_label}", unit, (f"c.drain.{c_job}", metric)))
    for metric in ("latency_p50", "latency_p95", "latency_max"):
        for c_label, c_job, h_job, h_label in LATENCY_PAIRS:
            out.append(
                Row(
                    f"latency {metric.split('_')[1]}: {c_label} vs {h_label}",
                    "ms",
                    (f"c.latency.{c_job}", metric),
                    (f"h.latency.{h_job}", metric),
                )
            )
    return out


def run_job(job: Job, workdir: Path, sizes: Sizes, rng: random.Random) -> dict[str, float]:
    run = Run(Path(tempfile.mkdtemp(prefix=job.key.replace(".", "-") + "-", dir=workdir)))
    system = job.system()
    try:
        if job.measure == "enqueue_single":
            return measure_enqueue_single(system, run, sizes)
        if job.measure == "drain":
            return measure_drain(system, run, sizes)
        return measure_latency(system, run, sizes, rng)
    finally:
        shutil.rmtree(run.dir, ignore_errors=True)


# -- the report ------------------------------------------------------------------------------------


def table(results: dict[str, Figures], sizes: Sizes) -> str:
    header = ("metric", "unit", "celeriac", "huey", "ratio c/h", "celeriac runs", "huey runs", "note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows(sizes):
        c_fig = results.get(row.celeriac[0], Figures())
        c_med = c_fig.median(row.celeriac[1])
        h_med = None
        h_runs = None
        if row.huey is not None:
            h_fig = results.get(row.huey[0], Figures())
            h_med = h_fig.median(row.huey[1])
            h_runs = h_fig.values.get(row.huey[1])
        if c_med is None and h_med is None:
            continue  # not measured in this invocation (--only)
        ratio = f"{c_med / h_med:.2f}" if c_med is not None and h_med else "—"
        cells = (
            row.label,
            row.unit,
            fmt(c_med),
            fmt(h_med),
            ratio,
            raw(c_fig.values.get(row.celeriac[1])),
            raw(h_runs),
            row.note,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _effective_synchronous(fsync: str, workdir: Path) -> str:
    """``PRAGMA synchronous`` as a SqliteHuey connection with this fsync setting sees it."""
    from huey_app import FSYNC, make_huey

    directory = Path(tempfile.mkdtemp(prefix="pragma-", dir=workdir))
    try:
        huey, _, _ = make_huey(str(directory / "probe.db"), FSYNC[fsync])
        value = huey.storage.conn.execute("pragma synchronous").fetchone()[0]
        huey.storage.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(value, str(value))


def machine(workdir: Path) -> list[str]:
    from importlib.metadata import version

    return [
        f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"CPU: {cpu_model()}, {cores()}",
        f"RAM: {ram()}",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {platform.python_version()} ({sys.executable}), SQLite {sqlite3.sqlite_version}",
        f"celeriac {version('celeriac')} at {celeriac_source()}, huey {version('huey')}",
        f"benchmark directory filesystem: {mount_of(workdir)}",
        "huey PRAGMA synchronous: "
        + ", ".join(
            f"{label} -> {_effective_synchronous(fsync, workdir)}"
            for label, fsync in (("fsync=True", "1"), ("default fsync=None", "default"), ("fsync=False", "0"))
        ),
    ]


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported); default 3")
    parser.add_argument("--quick", action="store_true", help="tenth-size counts, one run: a smoke test")
    parser.add_argument(
        "--workdir", type=Path, default=BENCH_DIR / ".work", help="parent of the scratch directories"
    )
    parser.add_argument("--only", default="", help="comma-separated job key prefixes, e.g. c.drain,h.drain")
    parser.add_argument("--seed", type=int, default=1, help="seed of the latency pauses")
    return parser.parse_args(argv)


def header(argv: list[str], workdir: Path, sizes: Sizes, runs: int) -> None:
    print("# celeriac (SQLite broker) vs Huey (SqliteHuey)")
    print("command: " + " ".join(["python3", "benchmarks/bench_sqlite.py", *argv]))
    for line in machine(workdir):
        print(line)
    print(
        f"workers: {WORKERS} processes each; celeriac: {' '.join(celeriac_cmd(DURABLE)[1:])}; "
        f"huey: huey_consumer {' '.join(huey_cmd()[1:])}"
    )
    print(
        f"sizes: single {sizes.single}, batch {sizes.drain} in {sizes.batch_size}s, "
        f"drain {sizes.drain}, latency {sizes.latency_samples} samples; runs {runs}\n",
        flush=True,
    )


def run_all(
    jobs: list[Job], runs: int, workdir: Path, sizes: Sizes, rng: random.Random
) -> tuple[dict[str, Figures], list[str]]:
    """Every job once per run, in order (so celeriac and Huey interleave); failures are listed."""
    results: dict[str, Figures] = {}
    failures: list[str] = []
    for index in range(1, runs + 1):
        for job in jobs:
            tag = f"[run {index}/{runs}] {job.key}"
            try:
                metrics = run_job(job, workdir, sizes, rng)
            except Exception as exc:  # report it, go on with the other jobs
                failures.append(f"{tag}: {exc}")
                print(f"{tag}: FAILED: {exc}", flush=True)
                continue
            figures = results.setdefault(job.key, Figures())
            for name, value in metrics.items():
                figures.add(name, value)
            print(f"{tag}: {short(metrics)}", flush=True)
    return results, failures


def report(results: dict[str, Figures], failures: list[str], sizes: Sizes) -> int:
    print(
        "Medians of the runs; ratio = celeriac / huey (rates: >1 celeriac faster; times: <1 celeriac faster)."
    )
    print(table(results, sizes))
    extra = {
        key: fig.values["extra_runs"] for key, fig in results.items() if any(fig.values.get("extra_runs", []))
    }
    if extra:
        print(f"\nWARNING: task bodies ran more often than tasks were sent: {extra}")
    latency = results.get("c.latency.durable")
    p95 = latency.median("latency_p95") if latency is not None else None
    if p95 is not None:
        verdict = "met" if p95 < 50 else "NOT met"
        print(f"\nceleriac target: idle-to-running latency under 50 ms: p95 {p95:.1f} ms, {verdict}")
    if failures:
        print(f"\n{len(failures)} job(s) FAILED (their figures are missing from the medians):")
        for failure in failures:
            print("  " + failure.splitlines()[0])
        return 1
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes, runs = Sizes(), args.runs
    if args.quick:
        sizes, runs = Sizes(single=200, batch_size=1_000, drain=2_000, latency_samples=10), 1
    sys.path.insert(0, str(APPS))
    for name in [k for k in os.environ if k.startswith(("CELERIAC_", "BENCH_"))]:
        del os.environ[name]
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    prefixes = tuple(p for p in args.only.split(",") if p)
    jobs = [job for job in JOBS if not prefixes or job.key.startswith(prefixes)]
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-sqlite-", dir=args.workdir))
    source_at_start = celeriac_source()
    started = time.monotonic()
    try:
        header(argv, workdir, sizes, runs)
        results, failures = run_all(jobs, runs, workdir, sizes, random.Random(args.seed))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_run_end(started, source_at_start)
    return report(results, failures, sizes)


if __name__ == "__main__":
    bootstrap(__file__)
    sys.exit(main(sys.argv[1:]))
