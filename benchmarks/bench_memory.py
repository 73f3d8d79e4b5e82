#!/usr/bin/env python3
"""Worker memory and the cost of recycling children: celeriac and Celery side by side.

    python3 benchmarks/bench_memory.py            # or: make bench-memory

Runs in ``benchmarks/.venv`` like the other benchmarks (created on first use, celeriac
editable from this checkout, the peers of ``benchmarks/requirements.txt``).

Worker nodes, each with 2 child processes and the no-op task of the other benchmarks
(it appends one byte to a file; completions are counted by the file's size):

* ``celeriac-sqlite``: ``celeriac worker -c 2`` on the embedded SQLite broker, a fresh
  database file in a scratch directory for every job (``sqlite_apps/celeriac_app.py``);
* ``celeriac-redis``: the same on Redis (``redis_apps/celeriac_app.py``);
* ``celery-redis``: ``celery worker -c 2`` (prefork, its defaults) on Redis
  (``redis_apps/celery_app.py``).

Both Redis nodes use the server at ``--redis-url`` (default ``redis://127.0.0.1:6379/14``),
in a database number of the benchmark's own: it must be empty when the benchmark starts, and
it is emptied (``FLUSHDB``, that database only) before and after every job.

Measured:

1. ``memory``: 50,000 no-op tasks are queued in batches of 1,000 (celeriac ``apply_many``,
   Celery ``group(...).apply_async()``) with the node stopped; then the node is started and,
   while it drains them, the master (the process the benchmark started: celeriac's master,
   Celery's MainProcess) is sampled from outside every 0.25 s with psutil: RSS and USS of
   the master, RSS of each child, and the number of tasks done. Reported: the master's RSS
   after warm-up (the first sample with 5,000 tasks done), at the end (a last sample taken
   once the 50,000th task has run), the growth between the two, the least-squares slope of
   RSS against tasks done over the samples after warm-up (KiB per 10,000 tasks), how far
   above its warm-up value the master's RSS went; the same for USS; the children's RSS at
   the end. Workers log at WARNING.
2. ``recycle-1`` and ``recycle-100``: the node runs with ``worker_max_tasks_per_child`` 1 or
   100 (``--max-tasks-per-child 1`` / ``--max-tasks-per-child=1``); once it has run one
   warm-up task and has been idle for 1 s, 300 no-op tasks are sent in one batch and timed
   from the send to the 300th task body: tasks/s. Workers log at INFO (both systems, so
   that both pay for a log line per task): celeriac's master logs ``child N (pid P) ready
   X s after fork``, and the mean of X over the children started after the first two is
   the child start time. Celery does not log when a child is ready; its log shows how many
   pool processes it started (``ForkPoolWorker-N``).

Every job is run ``--runs`` times (default 3), the systems interleaved; the tables show the
medians and the raw values. Every worker runs in its own process group and is stopped by
pid (SIGTERM, SIGKILL after 15 s) in a ``finally``, as in the other benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    DRAIN_TIMEOUT_S,
    WORKERS,
    CeleriacSystem,
    Figures,
    Job,
    Run,
    System,
    apps_on_path,
    bootstrap,
    celeriac_source,
    family,
    file_size,
    fmt,
    log_tail,
    machine_lines,
    markdown_table,
    print_failures,
    print_run_end,
    producer,
    ratio,
    raw,
    run_all,
    select,
    start_run,
    wait_for_size,
    wait_started,
    workers,
)
from bench_redis import CelerySystem

SQLITE_APPS = BENCH_DIR / "sqlite_apps"
REDIS_APPS = BENCH_DIR / "redis_apps"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"

#: How often the master's memory is sampled from outside.
SAMPLE_INTERVAL_S = 0.25
#: worker_max_tasks_per_child of the recycling jobs.
RECYCLE_LIMITS = (1, 100)
MEASURES = ("memory", *(f"recycle-{limit}" for limit in RECYCLE_LIMITS))
#: How long a node stays idle after its warm-up task before the recycling batch is sent.
RECYCLE_SETTLE_S = 1.0
RECYCLE_TIMEOUT_S = 300.0
CELERIAC_READY = re.compile(r"child \d+ \(pid \d+\) ready ([0-9.]+) s after fork")
CELERIAC_STARTED = re.compile(r"started child \d+ \(pid \d+\)")
CELERY_POOL_PROCESS = re.compile(r"/ForkPoolWorker-(\d+)\]")


@dataclass(frozen=True, slots=True)
class Sizes:
    tasks: int = 50_000
    batch_size: int = 1_000
    warmup: int = 5_000
    recycle_tasks: int = 300


QUICK = Sizes(tasks=5_000, batch_size=1_000, warmup=1_000, recycle_tasks=60)


# -- the systems -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A system under test: its label, its broker (``sqlite`` or ``redis``), how to build it with
    a log level and extra worker arguments, and its flag for worker_max_tasks_per_child."""

    label: str
    broker: str
    make: Callable[[str, Sequence[str]], System]
    max_tasks: Callable[[int], list[str]]


def _celery(loglevel: str, args: Sequence[str]) -> System:
    return CelerySystem("celery-redis", NODES["celery-redis"].label, loglevel=loglevel, worker_args=args)


def _celeriac(key: str) -> Callable[[str, Sequence[str]], System]:
    def make(loglevel: str, args: Sequence[str]) -> System:
        return CeleriacSystem(key, NODES[key].label, loglevel=loglevel, worker_args=args)

    return make


def _celeriac_max_tasks(limit: int) -> list[str]:
    return ["--max-tasks-per-child", str(limit)]


NODES: dict[str, Node] = {
    "celeriac-sqlite": Node(
        "celeriac, SQLite broker", "sqlite", _celeriac("celeriac-sqlite"), _celeriac_max_tasks
    ),
    "celeriac-redis": Node("celeriac, Redis", "redis", _celeriac("celeriac-redis"), _celeriac_max_tasks),
    "celery-redis": Node(
        "celery prefork, Redis", "redis", _celery, lambda limit: [f"--max-tasks-per-child={limit}"]
    ),
}
#: celeriac node -> the Celery node it is compared with in the ratios
PAIRS = (("celeriac-redis", "celery-redis"), ("celeriac-sqlite", "celery-redis"))


def label_of(key: str) -> str:
    return NODES[key].label


# -- brokers: a clean state for every job ----------------------------------------------------------


class Brokers:
    """A fresh SQLite file per job; the Redis database of ``redis_url``, emptied around each job."""

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.client: Any = None

    def connect_redis(self) -> None:
        """Connect, and refuse a database that is not empty: it is flushed before every job."""
        import redis

        self.client = redis.Redis.from_url(self.redis_url)
        try:
            keys = self.client.dbsize()
        except redis.RedisError as exc:
            raise SystemExit(f"Redis at {self.redis_url} did not answer: {exc}") from None
        if keys:
            db = self.client.connection_pool.connection_kwargs.get("db", 0)
            raise SystemExit(
                f"Redis database {db} at {self.redis_url} holds {keys} keys; the benchmark empties its "
                f"database before every job, so it needs one that nobody else uses: pass --redis-url "
                f"with another database number, or empty it yourself (redis-cli -n {db} flushdb)"
            )

    def redis_version(self) -> str:
        return str(self.client.info("server").get("redis_version", "?")) if self.client else "?"

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.flushdb()
            self.client.close()
        self.client = None

    @contextlib.contextmanager
    def run(self, node: Node, job: Job) -> Iterator[Run]:
        scratch = Path(tempfile.mkdtemp(prefix=job.key.replace(".", "-") + "-", dir=self.workdir))
        try:
            if node.broker == "sqlite":
                yield Run(scratch, str(scratch / "bench.db"), "BENCH_DB", (SQLITE_APPS,))
            else:
                self.client.flushdb()
                try:
                    yield Run(scratch, self.redis_url, "BENCH_REDIS_URL", (REDIS_APPS,))
                finally:
                    self.client.flushdb()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


# -- sampling a master from outside ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    done: int  # task bodies run when the sample was taken
    rss_kib: float
    uss_kib: float
    children_rss_kib: tuple[float, ...]


class Sampler:
    """Samples the memory of the process ``pid`` and of its children every
    :data:`SAMPLE_INTERVAL_S`, from a thread of the benchmark, while the block runs."""

    def __init__(self, pid: int, done: Path) -> None:
        import psutil

        self.master = psutil.Process(pid)
        self.done = done
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def take(self) -> Sample:
        import psutil

        done = file_size(self.done)
        info = self.master.memory_full_info()
        children = []
        for child in self.master.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                children.append(child.memory_info().rss / 1024)
        return Sample(done, info.rss / 1024, info.uss / 1024, tuple(children))

    def _loop(self) -> None:
        import psutil

        next_at = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):  # the worker's exit is reported by the waiter
                self.samples.append(self.take())
            next_at += SAMPLE_INTERVAL_S
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _slope_per_10k(samples: Sequence[Sample], value: Callable[[Sample], float]) -> float | None:
    """Least-squares slope of ``value`` against tasks done, in KiB per 10,000 tasks."""
    if len({s.done for s in samples}) < 2:
        return None
    fit = statistics.linear_regression([s.done for s in samples], [value(s) for s in samples])
    return fit.slope * 10_000


def memory_figures(samples: Sequence[Sample], warmup: int) -> dict[str, float]:
    """The figures of one drain: warm-up is the first sample with ``warmup`` tasks done."""
    after = [s for s in samples if s.done >= warmup]
    if not after:
        raise RuntimeError(f"no sample with {warmup:,} tasks done ({len(samples)} samples)")
    warm, end = after[0], after[-1]
    figures = {
        "rss_warm_kib": warm.rss_kib,
        "rss_end_kib": end.rss_kib,
        "rss_growth_kib": end.rss_kib - warm.rss_kib,
        "rss_above_warm_kib": max(s.rss_kib for s in after) - warm.rss_kib,
        "uss_above_warm_kib": max(s.uss_kib for s in after) - warm.uss_kib,
        "uss_warm_kib": warm.uss_kib,
        "uss_end_kib": end.uss_kib,
        "uss_growth_kib": end.uss_kib - warm.uss_kib,
        "children_rss_kib": statistics.fmean(end.children_rss_kib) if end.children_rss_kib else 0.0,
        "children": float(len(end.children_rss_kib)),
        "samples": float(len(after)),
    }
    for name, value in (("rss_slope", lambda s: s.rss_kib), ("uss_slope", lambda s: s.uss_kib)):
        slope = _slope_per_10k(after, value)
        if slope is not None:
            figures[name] = slope
    return figures


# -- the measurements ------------------------------------------------------------------------------


def _worker_failed(exc: RuntimeError, run: Run) -> RuntimeError:
    return RuntimeError(f"{exc}\n--- worker log ---\n{log_tail(run.dir)}")


def measure_memory(node: Node, run: Run, sizes: Sizes) -> dict[str, float]:
    system = node.make("warning", ())
    with apps_on_path(run.paths), producer(system, run):
        started = time.perf_counter()
        system.send_many(sizes.tasks, sizes.batch_size)  # queued before the node starts
        enqueue_s = time.perf_counter() - started
    with workers(system.worker_cmds(run.url), run.env(system.worker_env()), run.dir) as procs:
        spawned = time.perf_counter()
        with Sampler(procs[0].pid, run.done) as sampler:
            wait_started(system, run, procs, run.done, 1)
            try:
                last = wait_for_size(run.done, sizes.tasks, procs, DRAIN_TIMEOUT_S, 0.005)
            except RuntimeError as exc:
                raise _worker_failed(exc, run) from None
        samples = [*sampler.samples, sampler.take()]
    figures = memory_figures(samples, sizes.warmup)
    figures["drain_per_s"] = sizes.tasks / (last - spawned)
    figures["enqueue_s"] = enqueue_s
    figures["drain_s"] = last - spawned
    return figures


def child_starts(key: str, log: str) -> dict[str, float]:
    """What the worker's INFO log tells about the children it started."""
    if family(key) == "celery":
        numbers = [int(n) for n in CELERY_POOL_PROCESS.findall(log)]
        return {"processes": float(max(numbers))} if numbers else {}
    figures = {"processes": float(len(CELERIAC_STARTED.findall(log)))}
    replacements = [float(s) for s in CELERIAC_READY.findall(log)][WORKERS:]  # not the first children
    if replacements:
        figures["child_start_ms"] = statistics.fmean(replacements) * 1000
        figures["child_starts"] = float(len(replacements))
    return figures


def measure_recycle(node: Node, run: Run, sizes: Sizes, limit: int) -> dict[str, float]:
    system = node.make("info", node.max_tasks(limit))
    count = sizes.recycle_tasks
    env = run.env(system.worker_env())
    with (
        apps_on_path(run.paths),
        producer(system, run),
        workers(system.worker_cmds(run.url), env, run.dir) as procs,
    ):
        system.send_one()  # warm-up: the node is up and has run a task
        wait_started(system, run, procs, run.done, 1)
        time.sleep(RECYCLE_SETTLE_S)
        sent = time.perf_counter()
        system.send_many(count, count)
        try:
            last = wait_for_size(run.done, 1 + count, procs, RECYCLE_TIMEOUT_S, 0.001)
        except RuntimeError as exc:
            raise _worker_failed(exc, run) from None
    log = (run.dir / "worker.log").read_text(errors="replace")
    return {"tasks_per_s": count / (last - sent), **child_starts(system.key, log)}


def run_job(job: Job, brokers: Brokers, sizes: Sizes) -> dict[str, float]:
    node = NODES[job.system]
    with brokers.run(node, job) as run:
        if job.measure == "memory":
            return measure_memory(node, run, sizes)
        return measure_recycle(node, run, sizes, int(job.measure.removeprefix("recycle-")))


# -- the report ------------------------------------------------------------------------------------


def mib(kib: float | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f}"


def kib(value: float | None) -> str:
    return "—" if value is None else f"{value:+,.0f}"


def kib_runs(values: Sequence[float] | None) -> str:
    return " / ".join(kib(v) for v in values) if values else "—"


def memory_tables(results: dict[str, Figures], systems: Sequence[str], sizes: Sizes) -> list[str]:
    rss_rows, uss_rows = [], []
    for key in systems:
        fig = results.get(f"{key}.memory")
        if fig is None:
            continue
        med, runs = fig.median, fig.values.get
        rss_rows.append(
            (
                label_of(key),
                mib(med("rss_warm_kib")),
                mib(med("rss_end_kib")),
                kib(med("rss_growth_kib")),
                kib(med("rss_slope")),
                kib(med("rss_above_warm_kib")),
                kib_runs(runs("rss_growth_kib")),
                kib_runs(runs("rss_slope")),
                fmt(med("drain_per_s")),
            )
        )
        uss_rows.append(
            (
                label_of(key),
                mib(med("uss_warm_kib")),
                mib(med("uss_end_kib")),
                kib(med("uss_growth_kib")),
                kib(med("uss_slope")),
                kib_runs(runs("uss_growth_kib")),
                f"{mib(med('children_rss_kib'))} (x{med('children') or 0:.0f})",
                " / ".join(f"{v:.0f}" for v in runs("samples") or ()),
            )
        )
    warm = f"after warm-up ({sizes.warmup:,} done)"
    lines = markdown_table(
        (
            "system",
            f"master RSS {warm}, MiB",
            "master RSS at end, MiB",
            "growth, KiB",
            "slope, KiB / 10,000 tasks",
            "highest above warm-up, KiB",
            "growth runs",
            "slope runs",
            "drain tasks/s",
        ),
        rss_rows,
    )
    if not lines:
        return []
    return [
        f"### 1. master memory over {sizes.tasks:,} no-op tasks (medians of the runs)",
        "",
        *lines,
        "",
        *markdown_table(
            (
                "system",
                f"master USS {warm}, MiB",
                "master USS at end, MiB",
                "USS growth, KiB",
                "USS slope, KiB / 10,000 tasks",
                "USS growth runs",
                "children RSS at end, MiB (mean per child)",
                "samples after warm-up",
            ),
            uss_rows,
        ),
    ]


def recycle_table(results: dict[str, Figures], systems: Sequence[str], sizes: Sizes) -> list[str]:
    rows = []
    for key in systems:
        base = results.get(f"{key}.recycle-{RECYCLE_LIMITS[-1]}", Figures()).median("tasks_per_s")
        for limit in RECYCLE_LIMITS:
            fig = results.get(f"{key}.recycle-{limit}")
            if fig is None:
                continue
            rate = fig.median("tasks_per_s")
            start = fig.median("child_start_ms")
            if family(key) == "celery":
                start_cell = "not logged"
            else:
                start_cell = fmt(start) if start is not None else "no child replaced"
            rows.append(
                (
                    label_of(key),
                    str(limit),
                    fmt(rate),
                    raw(fig.values.get("tasks_per_s")),
                    ratio(rate, base),
                    start_cell,
                    raw(fig.values.get("child_start_ms")),
                    " / ".join(f"{v:.0f}" for v in fig.values.get("processes", ())),
                )
            )
    lines = markdown_table(
        (
            "system",
            "max tasks per child",
            "tasks/s",
            "runs",
            f"ratio / max {RECYCLE_LIMITS[-1]}",
            "mean child start, ms",
            "child start runs",
            "child processes started, runs",
        ),
        rows,
    )
    if not lines:
        return []
    return [
        f"### 2. recycling by task count: {sizes.recycle_tasks} no-op tasks, 2 children "
        "(medians of the runs)",
        "",
        *lines,
        "",
        "child start: celeriac's `child N (pid P) ready X s after fork`, mean over the children "
        f"started after the first {WORKERS}; Celery logs no such time. Processes started: "
        "celeriac's `started child` lines; Celery's highest `ForkPoolWorker-N`.",
    ]


def ratio_lines(results: dict[str, Figures]) -> list[str]:
    lines = []
    for ours, theirs in PAIRS:
        mine, peer = results.get(f"{ours}.memory"), results.get(f"{theirs}.memory")
        if mine is not None and peer is not None:
            lines.append(
                f"{label_of(ours)} vs {label_of(theirs)}: master RSS at end "
                f"{ratio(mine.median('rss_end_kib'), peer.median('rss_end_kib'))}x, "
                f"master USS at end {ratio(mine.median('uss_end_kib'), peer.median('uss_end_kib'))}x, "
                f"master RSS slope {kib(mine.median('rss_slope'))} vs {kib(peer.median('rss_slope'))} "
                f"KiB / 10,000 tasks, child RSS "
                f"{ratio(mine.median('children_rss_kib'), peer.median('children_rss_kib'))}x"
            )
        for limit in RECYCLE_LIMITS:
            mine, peer = results.get(f"{ours}.recycle-{limit}"), results.get(f"{theirs}.recycle-{limit}")
            if mine is not None and peer is not None:
                lines.append(
                    f"{label_of(ours)} vs {label_of(theirs)}, max tasks per child {limit}: tasks/s "
                    f"{ratio(mine.median('tasks_per_s'), peer.median('tasks_per_s'))}x"
                )
    for key in NODES:
        one = results.get(f"{key}.recycle-{RECYCLE_LIMITS[0]}", Figures()).median("tasks_per_s")
        hundred = results.get(f"{key}.recycle-{RECYCLE_LIMITS[-1]}", Figures()).median("tasks_per_s")
        if one is not None and hundred is not None:
            lines.append(
                f"{label_of(key)}: a new child per task runs at {ratio(one, hundred)}x the rate of "
                f"one per {RECYCLE_LIMITS[-1]} tasks"
            )
    return lines


def bound_lines(results: dict[str, Figures], sizes: Sizes) -> list[str]:
    """What celeriac's master was seen to hold to: the most its RSS and USS rose above their
    warm-up values, over every run."""
    seen = []
    for key in NODES:
        fig = results.get(f"{key}.memory")
        if family(key) != "celeriac" or fig is None:
            continue
        rss, uss = fig.values.get("rss_above_warm_kib", []), fig.values.get("uss_above_warm_kib", [])
        seen.append(f"{label_of(key)}: RSS {max(rss):,.0f} KiB, USS {max(uss):,.0f} KiB ({len(rss)} runs)")
    if not seen:
        return []
    return [
        "celeriac's master runs no task code and keeps only bounded state (a record per child, "
        "counters per exit reason, memory rows per task name, fixed-length rings of recent child "
        "starts and memory samples), so its growth should be near zero. Observed bound, the most "
        f"the master rose above its warm-up value over the {sizes.tasks - sizes.warmup:,} tasks "
        f"after warm-up: {'; '.join(seen)}."
    ]


def report(results: dict[str, Figures], failures: Sequence[str], systems: Sequence[str], sizes: Sizes) -> int:
    for lines in (memory_tables(results, systems, sizes), recycle_table(results, systems, sizes)):
        if lines:
            print("\n" + "\n".join(lines))
    ratios = ratio_lines(results)
    if ratios:
        print("\n### ratios (celeriac / Celery)\n")
        print("\n".join(f"* {line}" for line in ratios))
    bound = bound_lines(results, sizes)
    if bound:
        print("\n" + "\n".join(bound))
    return print_failures(failures)


# -- main ------------------------------------------------------------------------------------------


def machine(brokers: Brokers) -> list[str]:
    return machine_lines(
        f"Redis: {brokers.redis_version()} at {brokers.redis_url} (that database flushed around every job)",
        ("celery", "kombu", "billiard", "psutil", "redis"),
    )


def header(argv: Sequence[str], brokers: Brokers, systems: Sequence[str], sizes: Sizes, runs: int) -> None:
    print("# Worker memory and the cost of recycling: celeriac and Celery")
    print("command: " + " ".join(["python3", "benchmarks/bench_memory.py", *argv]))
    for line in machine(brokers):
        print(line)
    print(f"workers: {WORKERS} children each; the commands (cwd: a scratch directory):")
    for key in systems:
        node = NODES[key]
        cmd = node.make("warning", ()).worker_cmds("URL")[0]
        print(f"  {key}: {' '.join([Path(cmd[0]).name, *cmd[1:]])}")
        recycle = node.make("info", node.max_tasks(1)).worker_cmds("URL")[0]
        print(f"    recycling: ... {' '.join(recycle[recycle.index('-l') :])}")
    print(
        f"sizes: memory {sizes.tasks:,} tasks in batches of {sizes.batch_size:,}, warm-up {sizes.warmup:,}, "
        f"sampled every {SAMPLE_INTERVAL_S} s; recycling {sizes.recycle_tasks} tasks with max tasks per "
        f"child {' and '.join(map(str, RECYCLE_LIMITS))}; runs {runs}\n",
        flush=True,
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported); default 3")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 5,000 tasks (warm-up 1,000), 60 recycling tasks"
    )
    parser.add_argument("--only", default="", help=f"comma-separated systems or families: {', '.join(NODES)}")
    parser.add_argument("--skip", default="", help="comma-separated systems or families to leave out")
    parser.add_argument("--measure", default=",".join(MEASURES), help=f"subset of {', '.join(MEASURES)}")
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"an empty Redis database, flushed around every job (default {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--workdir", type=Path, default=BENCH_DIR / ".work", help="parent of the scratch directories"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    runs = max(1, args.runs)
    keys = list(NODES)
    only = select(args.only, "--only", keys) or set(keys)
    systems = [key for key in keys if key in only - select(args.skip, "--skip", keys)]
    measures = [m.strip() for m in args.measure.split(",") if m.strip()]
    if set(measures) - set(MEASURES) or not systems:
        raise SystemExit(f"nothing to run: --measure takes {', '.join(MEASURES)}; systems {systems}")
    workdir = start_run(args.workdir, "bench-memory-")
    brokers = Brokers(args.redis_url, workdir)
    source_at_start = celeriac_source()
    started = time.monotonic()
    try:
        if any(NODES[key].broker == "redis" for key in systems):
            brokers.connect_redis()
        header(argv, brokers, systems, sizes, runs)
        jobs = [Job(key, measure) for measure in MEASURES if measure in measures for key in systems]
        results, failures = run_all(jobs, runs, lambda job: run_job(job, brokers, sizes), label_of)
    except KeyboardInterrupt:
        print("\ninterrupted: every worker was stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        brokers.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print_run_end(started, source_at_start)
    return report(results, failures, systems, sizes)


if __name__ == "__main__":
    bootstrap(__file__)
    sys.exit(main(sys.argv[1:]))
