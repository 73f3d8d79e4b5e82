#!/usr/bin/env python3
"""Canvas on Redis side by side: celeriac and Celery 5, group, chord and chain of a no-op task.

    python3 benchmarks/bench_canvas.py            # or: make bench-canvas

Runs in its own virtualenv, ``benchmarks/.venv`` (see ``_common.bootstrap``), so Celery
never becomes a dependency of celeriac.

Two private ``redis-server`` processes (no persistence), started by the benchmark on
free ports and stopped by pid at the end: one is the broker, the other the result
backend, so that ``INFO commandstats`` on the second counts the result backend's
commands and nothing else (a shared server's counters would include every other
client). Both are emptied (``FLUSHALL``) before every job. Each system runs two
worker processes and the same no-op task (``bench.canvas_noop``, any arguments,
returns None, result kept); the workers are started for each job and one task is
waited for before anything is timed. Every figure is measured ``--runs`` times
(default 3), the systems interleaved, and the table shows the medians, the ratio
Celery / celeriac (times: > 1 means celeriac is faster) and the raw values.

Jobs (``--only`` takes job names, system names or ``system.job``; a job is added by
writing one function and naming it in :data:`JOBS`):

* ``group``: ``group(noop.s() x 10,000).apply_async()``: the publish time, and the time
  from the call to ``GroupResult.get()`` returning (every result read);
* ``chord``: ``chord(noop.s() x 10,000)(noop.s())``: the time from the call to the body's
  result, read through ``app.AsyncResult(body_id)``; where ``celeriac.canvas`` has no chord
  yet the job prints "skipped: no chord yet". Not through the handle the call returns: that
  handle's parent is the header's group, and Celery 5.7's ``AsyncResult.get()`` checks every
  parent for an error (``_maybe_reraise_parent_error``) at each wake-up of its result
  consumer, so with 10,000 members the caller spent minutes of CPU after the body's result
  was stored (it had not returned after 3 minutes);
* ``chain``: ``chain(noop.s() x 1,000).apply_async().get()``: the mean time per hop.

Every job also reports, per member (per step for the chain), the result backend's round
trips (``backend_trips_per_member``: the server's ``total_reads_processed``, after minus
before, the ``INFO`` readings left out: one per request, or per pipeline that fits the
server's read buffer) and its commands (``backend_cmds_per_member``: ``INFO
commandstats``, which counts each command of a pipeline and each ``redis.call`` inside a
Lua script; the breakdown is printed after each job). Both cover the workers' writes, the
chord's counting and the caller's reads and waits.
``--quick``: 1,000 members, 100 chain steps.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    WORKERS,
    Figures,
    Run,
    StartError,
    bootstrap,
    celeriac_source,
    fmt,
    log_tail,
    machine_lines,
    markdown_table,
    print_failures,
    print_run_end,
    ratio,
    raw,
    short,
    start_run,
    venv_bin,
    workers,
)

APPS = BENCH_DIR / "redis_apps"
#: the reference of the ratios
REFERENCE = "celeriac"
STARTUP_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 900.0


class Skipped(Exception):
    """The system lacks what the job needs (a chord before celeriac has one): nothing measured."""


@dataclass(frozen=True, slots=True)
class CanvasSizes:
    group: int = 10_000
    chord: int = 10_000
    chain: int = 1_000


QUICK = CanvasSizes(group=1_000, chord=1_000, chain=100)


# -- the systems -----------------------------------------------------------------------------------


class CanvasSystem:
    """A producer (the app, its no-op task, the canvas primitives) and the worker command."""

    def __init__(self, key: str, label: str) -> None:
        self.key, self.label = key, label
        self.app: Any = None
        self.noop: Any = None

    def open(self, broker: str, backend: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
        self.app = None

    def primitives(self) -> tuple[Any, Any, Any]:
        """``group``, ``chain`` and ``chord`` (None when the system has none)."""
        raise NotImplementedError

    def worker_cmd(self) -> list[str]:
        raise NotImplementedError


class CeleriacCanvas(CanvasSystem):
    def open(self, broker: str, backend: str) -> None:
        from canvas_celeriac_app import make_app

        self.app, self.noop = make_app(broker, backend)

    def primitives(self) -> tuple[Any, Any, Any]:
        from celeriac.canvas import chain, group

        try:
            from celeriac.canvas import chord  # type: ignore[attr-defined]
        except (ImportError, AttributeError):
            chord = None
        return group, chain, chord

    def worker_cmd(self) -> list[str]:
        cmd = [sys.executable, "-m", "celeriac", "worker", "-A", "canvas_celeriac_app:app"]
        return [*cmd, "-c", str(WORKERS), "-l", "warning"]


class CeleryCanvas(CanvasSystem):
    def open(self, broker: str, backend: str) -> None:
        from canvas_celery_app import make_app

        self.app, self.noop = make_app(broker, backend)

    def primitives(self) -> tuple[Any, Any, Any]:
        from celery import chain, chord, group

        return group, chain, chord

    def worker_cmd(self) -> list[str]:
        return [venv_bin("celery"), "-A", "canvas_celery_app", "worker", "-c", str(WORKERS), "-l", "warning"]


SYSTEMS: dict[str, Callable[[], CanvasSystem]] = {
    "celeriac": lambda: CeleriacCanvas("celeriac", "celeriac, Redis result backend"),
    "celery": lambda: CeleryCanvas("celery", "celery 5 prefork, Redis result backend"),
}


# -- the jobs --------------------------------------------------------------------------------------


def job_group(system: CanvasSystem, sizes: CanvasSizes) -> dict[str, float]:
    group, _, _ = system.primitives()
    noop, size = system.noop, sizes.group
    started = time.perf_counter()
    result = group(noop.s() for _ in range(size)).apply_async()
    published = time.perf_counter()
    values = result.get(timeout=JOB_TIMEOUT_S)
    done = time.perf_counter()
    if len(values) != size:
        raise RuntimeError(f"group: {len(values)} results for {size} members")
    return {
        "publish_s": published - started,
        "results_s": done - started,
        "tasks_per_s": size / (done - started),
    }


def job_chord(system: CanvasSystem, sizes: CanvasSizes) -> dict[str, float]:
    _, _, chord = system.primitives()
    if chord is None:
        raise Skipped("no chord yet")
    noop, size = system.noop, sizes.chord
    started = time.perf_counter()
    result = chord(noop.s() for _ in range(size))(noop.s())
    published = time.perf_counter()
    # a handle without the header as its parent: Celery's get() on the returned handle walks
    # every member of the header at each wake-up (quadratic in the size; see the module doc)
    system.app.AsyncResult(result.id).get(timeout=JOB_TIMEOUT_S)
    done = time.perf_counter()
    return {
        "publish_s": published - started,
        "body_s": done - started,
        "tasks_per_s": size / (done - started),
    }


def job_chain(system: CanvasSystem, sizes: CanvasSizes) -> dict[str, float]:
    _, chain, _ = system.primitives()
    noop, size = system.noop, sizes.chain
    started = time.perf_counter()
    result = chain(*(noop.s() for _ in range(size))).apply_async()
    published = time.perf_counter()
    result.get(timeout=JOB_TIMEOUT_S)
    done = time.perf_counter()
    return {
        "publish_s": published - started,
        "total_s": done - started,
        "hop_ms": (done - started) / size * 1000,
    }


#: job name -> (measurement, its size, the metrics shown, in order)
JOBS: dict[str, tuple[Callable[[CanvasSystem, CanvasSizes], dict[str, float]], str, tuple[str, ...]]] = {
    "group": (
        job_group,
        "group",
        ("publish_s", "results_s", "tasks_per_s", "backend_trips_per_member", "backend_cmds_per_member"),
    ),
    "chord": (
        job_chord,
        "chord",
        ("publish_s", "body_s", "tasks_per_s", "backend_trips_per_member", "backend_cmds_per_member"),
    ),
    "chain": (
        job_chain,
        "chain",
        ("publish_s", "total_s", "hop_ms", "backend_trips_per_member", "backend_cmds_per_member"),
    ),
}


# -- one job ---------------------------------------------------------------------------------------


def backend_counters(client: Any) -> tuple[dict[str, int], int]:
    """The calls of each command since the counters were reset (those run inside a Lua script
    or a MULTI included), and the socket reads the server has processed (one per request or
    pipeline that fits its read buffer: the round trips)."""
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_").upper(): int(entry["calls"]) for name, entry in stats.items()}
    return calls, int(client.info("stats")["total_reads_processed"])


def per_member(before: dict[str, int], after: dict[str, int], size: int) -> dict[str, float]:
    """Each command's calls between the two readings, per member, the ``INFO`` readings left out."""
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    delta["INFO"] = delta.get("INFO", 0) - 2
    return {name: calls / size for name, calls in sorted(delta.items(), key=lambda kv: -kv[1]) if calls > 0}


def run_job(
    system_key: str, job: str, servers: tuple[Any, Any], workdir: Path, sizes: CanvasSizes
) -> dict[str, float]:
    broker, backend = servers
    measure, size_name, _ = JOBS[job]
    size = getattr(sizes, size_name)
    scratch = Path(tempfile.mkdtemp(prefix=f"{system_key}-{job}-", dir=workdir))
    run = Run(scratch, broker.url, "BENCH_REDIS_URL", (APPS,))
    broker.flushall()
    backend.flushall()
    system = SYSTEMS[system_key]()
    try:
        system.open(broker.url, backend.url)
        env = run.env({"BENCH_RESULT_URL": backend.url})
        with workers([system.worker_cmd()], env, run.dir):
            try:
                system.noop.delay().get(timeout=STARTUP_TIMEOUT_S)  # the workers are up
            except Exception as exc:
                raise StartError(
                    f"{system.label}: no result from the workers ({exc!r})\n{log_tail(run.dir)}"
                ) from None
            backend.client.config_resetstat()
            before, reads_before = backend_counters(backend.client)
            try:
                metrics = measure(system, sizes)
            except Skipped:
                raise
            except Exception as exc:
                raise RuntimeError(f"{exc!r}\n--- worker log ---\n{log_tail(run.dir)}") from None
            after, reads_after = backend_counters(backend.client)
        counts = per_member(before, after, size)
        metrics["backend_cmds_per_member"] = sum(counts.values())
        metrics["backend_trips_per_member"] = (reads_after - reads_before - 2) / size  # the 2 INFOs
        print(
            f"  {system_key}.{job} backend commands per member: "
            + ", ".join(f"{k} {v:.2f}" for k, v in counts.items()),
            flush=True,
        )
        return metrics
    finally:
        system.close()
        shutil.rmtree(run.dir, ignore_errors=True)


# -- the plan and the report -----------------------------------------------------------------------


def select(names: str) -> list[tuple[str, str]]:
    """The (system, job) pairs ``--only`` names: jobs, systems or ``system.job``, comma-separated."""
    pairs = [(job, key) for job in JOBS for key in SYSTEMS]
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if not wanted:
        return [(key, job) for job, key in pairs]
    chosen = []
    for job, key in pairs:
        if any(name in (job, key, f"{key}.{job}") for name in wanted):
            chosen.append((key, job))
    unknown = [n for n in wanted if not any(n in (j, k, f"{k}.{j}") for j, k in pairs)]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; jobs: {', '.join(JOBS)}; systems: {', '.join(SYSTEMS)}")
    return chosen


def run_all(
    pairs: Sequence[tuple[str, str]], runs: int, one: Callable[[str, str], dict[str, float]]
) -> tuple[dict[str, Figures], list[str], dict[str, str]]:
    results: dict[str, Figures] = {}
    failures: list[str] = []
    skipped: dict[str, str] = {}
    for index in range(1, runs + 1):
        for key, job in pairs:
            tag = f"[run {index}/{runs}] {key}.{job}"
            if f"{key}.{job}" in skipped:
                continue
            try:
                metrics = one(key, job)
            except Skipped as exc:
                skipped[f"{key}.{job}"] = str(exc)
                print(f"{tag}: skipped: {exc}", flush=True)
                continue
            except Exception as exc:
                failures.append(f"{tag}: {exc}")
                print(f"{tag}: FAILED: {exc}", flush=True)
                continue
            figures = results.setdefault(f"{key}.{job}", Figures())
            for name, value in metrics.items():
                figures.add(name, value)
            print(f"{tag}: {short(metrics)}", flush=True)
    return results, failures, skipped


def report(results: dict[str, Figures], skipped: dict[str, str], pairs: Sequence[tuple[str, str]]) -> None:
    print("\nMedians of the runs; ratio = celery / celeriac (times: > 1 means celeriac is faster).\n")
    rows = []
    for job, (_, _, metrics) in JOBS.items():
        if not any(j == job for _, j in pairs):
            continue
        ours, theirs = results.get(f"{REFERENCE}.{job}"), results.get(f"celery.{job}")
        if ours is None and theirs is None:
            note = "; ".join(f"{k}: skipped: {v}" for k, v in skipped.items() if k.endswith(f".{job}"))
            rows.append([job, "—", "—", "—", "—", note or "no result", ""])
            continue
        for metric in metrics:
            a = ours.median(metric) if ours else None
            b = theirs.median(metric) if theirs else None
            cell_a = fmt(a) if ours else skipped.get(f"{REFERENCE}.{job}", "—")
            rows.append(
                [
                    job,
                    metric,
                    cell_a,
                    fmt(b),
                    ratio(b, a),
                    raw(ours.values.get(metric) if ours else None),
                    raw(theirs.values.get(metric) if theirs else None),
                ]
            )
    header = ["job", "metric", "celeriac", "celery", "celery / celeriac", "celeriac runs", "celery runs"]
    print("\n".join(markdown_table(header, rows)))


def main(argv: list[str]) -> int:
    from bench_redis import RedisServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported); default 3")
    parser.add_argument("--quick", action="store_true", help="1,000 members, 100 chain steps")
    parser.add_argument("--only", default="", help=f"jobs ({', '.join(JOBS)}), systems or system.job")
    parser.add_argument(
        "--workdir", type=Path, default=BENCH_DIR / ".work", help="parent of the scratch directories"
    )
    args = parser.parse_args(argv)
    sizes, runs, pairs = (QUICK if args.quick else CanvasSizes()), max(1, args.runs), select(args.only)
    sys.path.insert(0, str(APPS))
    workdir = start_run(args.workdir, "bench-canvas-")
    servers = (RedisServer(workdir / "broker"), RedisServer(workdir / "backend"))
    source_at_start = celeriac_source()
    started = time.monotonic()
    try:
        for server in servers:
            server.workdir.mkdir()
            server.start()
        print("# Canvas on Redis: celeriac and Celery")
        print("command: " + " ".join(["python3", "benchmarks/bench_canvas.py", *argv]))
        broker, backend = servers
        for line in machine_lines(
            f"redis-server {broker.version()}: broker 127.0.0.1:{broker.port}, "
            f"result backend 127.0.0.1:{backend.port} (no persistence, FLUSHALL per job)",
            ("celery", "kombu", "redis", "hiredis"),
        ):
            print(line)
        print(f"workers: {WORKERS} processes per system, started per job")
        print(
            f"sizes: group {sizes.group:,}, chord {sizes.chord:,}, chain {sizes.chain:,}; runs {runs}\n",
            flush=True,
        )
        results, failures, skipped = run_all(
            pairs, runs, lambda key, job: run_job(key, job, servers, workdir, sizes)
        )
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every worker and the redis-servers", file=sys.stderr, flush=True)
        return 130
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print_run_end(started, source_at_start)
    report(results, skipped, pairs)
    return print_failures(failures)


if __name__ == "__main__":
    bootstrap(__file__)
    sys.exit(main(sys.argv[1:]))
