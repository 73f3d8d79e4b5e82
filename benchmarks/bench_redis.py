#!/usr/bin/env python3
"""Task queues on Redis side by side: celeriac, Celery, Dramatiq, RQ, Huey and a bare redis-py loop.

    python3 benchmarks/bench_redis.py            # or: make bench-redis

Runs in its own virtualenv, ``benchmarks/.venv`` (created on first use, with
celeriac installed editable from this checkout and the pinned peers of
``benchmarks/requirements.txt``; the script re-executes itself inside it), so
peers never become dependencies of celeriac.

Every system runs on the same private ``redis-server`` that the benchmark starts
on a free port (no persistence: ``--save "" --appendonly no``) and kills at the
end; every job starts on an emptied server (``FLUSHALL``). Every system runs two
worker processes and a no-op task that appends one byte to a file (``os.write``
on an ``O_APPEND`` descriptor opened once per process); the benchmark counts
completions by the file's size, with no per-task Redis round trip. Every figure
is measured ``--runs`` times (default 3), the systems interleaved (every job of
run 1, then every job of run 2, ...), and the tables show the medians, the ratio
to celeriac (durable queue, early ack: its defaults) and the raw values.

Measured:

1. enqueue, single calls: 5,000 sends one by one, no worker running;
2. enqueue, batch: 20,000 sends through each system's batch API in batches of 1,000
   (celeriac ``apply_many``, Celery ``group(...).apply_async()``, RQ ``enqueue_many``;
   Dramatiq and Huey have none: a loop of single sends), and, as the ceiling, a raw
   redis-py pipeline ``LPUSH`` of celeriac's own message bytes;
3. drain: 20,000 tasks queued with the workers stopped; time from starting the workers
   to the 20,000th task body having run (start-up included), and the start-up alone
   (workers started to first task done);
4. latency: workers started and idle, 200 tasks/s sent for 10 s (paced with a monotonic
   clock), each carrying its enqueue time (``time.time()``) as its argument; the body
   records ``time.time()`` at its start; p50, p95, p99 (nearest rank) in ms.

Systems (``--only``/``--skip`` take these keys or their family, the part before ``-``):

* ``celeriac``: ``celeriac worker -A celeriac_app:app -c 2``, durable queue, early ack (its
  defaults; the reference of every ratio); ``celeriac-late``: ``task_acks_late=True``;
  ``celeriac-transient``: ``Queue("transient", durable=False)`` as ``task_default_queue``;
  ``celeriac-auto``: ``--prefetch-multiplier auto``. Tasks ``ignore_result=True``.
* ``celery``: ``celery worker -c 2`` (prefork), defaults, no result backend, tasks
  ``ignore_result=True``; ``celery-tuned``: the same with ``--prefetch-multiplier 64``.
* ``dramatiq``: ``RedisBroker``, default middleware, ``--processes 2 --threads 1``.
* ``rq``: two ``rq worker`` processes, the default ``Worker`` (forks a work horse per job);
  ``rq-simple``: ``--worker-class rq.worker.SimpleWorker`` (runs jobs in the worker process).
* ``huey``: ``RedisHuey`` (blocking dequeue, its default), ``huey_consumer -w 2 -k process``.
* ``bare`` (``redis_apps/bare_loop.py``): two processes, each ``BLMPOP`` 100 messages at a
  time from the list celeriac's durable queue uses, decode the kombu JSON envelope and its
  body, call the function; no ack, no bookkeeping. The ceiling: the report gives celeriac's
  drain and batch enqueue as fractions of it. Its messages are celeriac's own bytes.

Celery, RQ and Huey workers log at WARNING (``-l warning``, ``--quiet``, ``-q``) so that no
system writes a log line per task; Huey also runs without its periodic-task scheduler (``-n``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    WORKERS,
    CeleriacSystem,
    Figures,
    Job,
    Run,
    Sizes,
    System,
    arg_parser,
    bootstrap,
    celeriac_source,
    choose,
    extra_runs_warning,
    family,
    latency_section,
    machine_lines,
    measure,
    plan,
    print_failures,
    print_run_end,
    ratio,
    run_all,
    saturation_note,
    section,
    start_run,
    venv_bin,
)

APPS = BENCH_DIR / "redis_apps"

#: Celery's tuned row: messages reserved per child process (Celery's default is 4).
CELERY_TUNED_PREFETCH = 64
REDIS_START_TIMEOUT_S = 10.0
#: The reference every ratio is taken against: celeriac's defaults (durable queue, early ack).
REFERENCE = "celeriac"
BARE = "bare"


# -- the Redis server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` (no persistence) as a child process, stopped by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.client: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found on PATH: install it (e.g. apt-get install redis-server)")
        import redis

        for _attempt in range(3):  # the free port may be taken between the probe and the bind
            self.port = _free_port()
            cmd = [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            cmd += ["--daemonize", "no", "--dir", str(self.workdir), "--logfile", ""]
            log = (self.workdir / "redis.log").open("ab")
            with log:
                self.proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            self.client = redis.Redis(host="127.0.0.1", port=self.port)
            deadline = time.monotonic() + REDIS_START_TIMEOUT_S
            while self.proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(redis.ConnectionError):
                    if self.client.ping():
                        return
                time.sleep(0.02)
            self.stop()
        tail = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"redis-server did not start:\n{tail}")

    def flushall(self) -> None:
        self.client.flushall()

    def version(self) -> str:
        if self.client is None:
            return "?"
        return str(self.client.info("server").get("redis_version", "?"))

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


# -- the systems behind one interface --------------------------------------------------------------


class CelerySystem(System):
    batch_note = "group(noop.s() x 1000).apply_async(): one LPUSH per task on one connection"

    def __init__(
        self,
        key: str,
        label: str,
        prefetch: int | None = None,
        loglevel: str = "warning",
        worker_args: Sequence[str] = (),
    ) -> None:
        super().__init__(key, label)
        self.prefetch = prefetch
        self.loglevel, self.worker_args = loglevel, tuple(worker_args)
        self.app: Any = None
        self.noop: Any = None
        self.latency: Any = None

    def open(self, url: str) -> None:
        from celery_app import make_app

        self.app, self.noop, self.latency = make_app(url)
        with self.app.pool.acquire(block=True) as conn:  # a pooled connection, opened untimed
            conn.ensure_connection(max_retries=3)
            conn.default_channel.client.ping()

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
        self.app = None

    def send_one(self) -> None:
        self.noop.delay()

    def send_latency(self, sent: float) -> None:
        self.latency.delay(sent)

    def send_many(self, total: int, batch: int) -> None:
        from celery import group

        noop = self.noop
        for _ in range(total // batch):
            group(noop.s() for _ in range(batch)).apply_async()

    def worker_cmds(self, url: str) -> list[list[str]]:
        cmd = [venv_bin("celery"), "-A", "celery_app", "worker", "-c", str(WORKERS), "-l", self.loglevel]
        if self.prefetch is not None:
            cmd += ["--prefetch-multiplier", str(self.prefetch)]
        return [[*cmd, *self.worker_args]]


class DramatiqSystem(System):
    batch_note = "no batch API (group().run() sends one by one): a loop of send()"

    def __init__(self, key: str, label: str) -> None:
        super().__init__(key, label)
        self.broker: Any = None
        self.noop: Any = None
        self.latency: Any = None

    def open(self, url: str) -> None:
        from dramatiq_app import make_broker

        self.broker, self.noop, self.latency = make_broker(url)
        self.broker.client.ping()

    def close(self) -> None:
        if self.broker is not None:
            self.broker.close()
        self.broker = None

    def send_one(self) -> None:
        self.noop.send()

    def send_latency(self, sent: float) -> None:
        self.latency.send(sent)

    def send_many(self, total: int, batch: int) -> None:
        send = self.noop.send
        for _ in range(total):
            send()

    def worker_cmds(self, url: str) -> list[list[str]]:
        return [[venv_bin("dramatiq"), "dramatiq_app", "--processes", str(WORKERS), "--threads", "1"]]


class RQSystem(System):
    batch_note = "enqueue_many(1000 x prepare_data(noop)): one pipeline per call"

    def __init__(self, key: str, label: str, worker_class: str | None = None) -> None:
        super().__init__(key, label)
        self.worker_class = worker_class
        self.conn: Any = None
        self.queue: Any = None

    def open(self, url: str) -> None:
        from redis import Redis
        from rq import Queue

        self.conn = Redis.from_url(url)
        self.queue = Queue("default", connection=self.conn)
        self.conn.ping()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def send_one(self) -> None:
        import rq_app

        self.queue.enqueue(rq_app.noop)

    def send_latency(self, sent: float) -> None:
        import rq_app

        self.queue.enqueue(rq_app.latency, sent)

    def send_many(self, total: int, batch: int) -> None:
        import rq_app
        from rq import Queue

        for _ in range(total // batch):
            self.queue.enqueue_many([Queue.prepare_data(rq_app.noop) for _ in range(batch)])

    def worker_cmds(self, url: str) -> list[list[str]]:
        cmd = [venv_bin("rq"), "worker", "--url", url, "--quiet"]
        if self.worker_class is not None:
            cmd += ["--worker-class", self.worker_class]
        return [[*cmd, "default"] for _ in range(WORKERS)]


class HueySystem(System):
    batch_note = "no batch API: a loop of task calls"

    def __init__(self, key: str, label: str) -> None:
        super().__init__(key, label)
        self.huey: Any = None
        self.noop: Any = None
        self.latency: Any = None

    def open(self, url: str) -> None:
        from huey_app import make_huey

        self.huey, self.noop, self.latency = make_huey(url)
        self.huey.storage.conn.ping()

    def close(self) -> None:
        if self.huey is not None:
            self.huey.storage.conn.close()
        self.huey = None

    def send_one(self) -> None:
        self.noop()

    def send_latency(self, sent: float) -> None:
        self.latency(sent)

    def send_many(self, total: int, batch: int) -> None:
        noop = self.noop
        for _ in range(total):
            noop()

    def worker_cmds(self, url: str) -> list[list[str]]:
        return [[venv_bin("huey_consumer"), "huey_app.huey", "-w", str(WORKERS), "-k", "process", "-n", "-q"]]


#: celeriac's message bytes, captured once (see :func:`celeriac_messages`), and where they came from.
_CAPTURED: list[bytes] = []
_CAPTURED_FROM: list[str] = []


def celeriac_messages(client: Any, url: str, count: int) -> list[bytes]:
    """``count`` no-op messages exactly as celeriac pushes them (captured from a real publish on
    an empty server, which is emptied again); built by ``bare_loop.kombu_message`` if celeriac's
    Redis broker cannot be used."""
    if len(_CAPTURED) < count:
        _CAPTURED.clear()
        _CAPTURED_FROM.clear()
        try:
            from celeriac_app import make_app

            app, noop, _ = make_app(url, "celery", False)
            try:
                noop.apply_many([()] * count)
            finally:
                app.close()
            _CAPTURED.extend(client.lrange("celery", 0, -1))
            _CAPTURED_FROM.append("celeriac's own bytes (captured from apply_many)")
        except Exception as exc:  # celeriac's Redis broker missing or broken: build them
            from bare_loop import kombu_message

            _CAPTURED[:] = [kombu_message("bench.noop", []) for _ in range(count)]
            _CAPTURED_FROM.append(f"built by bare_loop.kombu_message (celeriac unavailable: {exc})")
        client.flushdb()
    return _CAPTURED[:count]


class BareSystem(System):
    batch_note = "ceiling: raw redis-py pipeline, LPUSH of 1000 celeriac messages per round trip"

    def __init__(self, key: str, label: str) -> None:
        super().__init__(key, label)
        self.client: Any = None
        self.messages: list[bytes] = []
        self.next = 0

    def open(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.client.ping()
        self.messages = celeriac_messages(self.client, url, 1_000)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    def send_one(self) -> None:
        self.client.lpush("celery", self.messages[self.next % len(self.messages)])
        self.next += 1

    def send_latency(self, sent: float) -> None:
        from bare_loop import kombu_message

        self.client.lpush("celery", kombu_message("bench.latency", [sent]))

    def send_many(self, total: int, batch: int) -> None:
        messages = self.messages
        for index in range(total // batch):
            chunk = [messages[(index * batch + i) % len(messages)] for i in range(batch)]
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush("celery", *chunk)
            pipe.execute()

    def worker_cmds(self, url: str) -> list[list[str]]:
        return [[sys.executable, str(APPS / "bare_loop.py")] for _ in range(WORKERS)]

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_QUEUE": "celery"}


#: Every system in one configuration, in table order: key -> (family, factory).
SYSTEMS: dict[str, Callable[[], System]] = {
    "celeriac": lambda: CeleriacSystem("celeriac", "celeriac durable, early ack (defaults)"),
    "celeriac-late": lambda: CeleriacSystem(
        "celeriac-late", "celeriac durable, task_acks_late", acks_late=True
    ),
    "celeriac-transient": lambda: CeleriacSystem(
        "celeriac-transient", "celeriac transient queue (durable=False)", queue="transient"
    ),
    "celeriac-auto": lambda: CeleriacSystem(
        "celeriac-auto", "celeriac durable, early ack, prefetch auto", prefetch="auto"
    ),
    "celery": lambda: CelerySystem("celery", "celery defaults (prefork, prefetch 4)"),
    "celery-tuned": lambda: CelerySystem(
        "celery-tuned",
        f"celery TUNED: worker_prefetch_multiplier={CELERY_TUNED_PREFETCH}",
        prefetch=CELERY_TUNED_PREFETCH,
    ),
    "dramatiq": lambda: DramatiqSystem("dramatiq", "dramatiq RedisBroker, 2 processes x 1 thread"),
    "rq": lambda: RQSystem("rq", "rq Worker (default: forks per job)"),
    "rq-simple": lambda: RQSystem(
        "rq-simple", "rq SimpleWorker (no fork per job)", worker_class="rq.worker.SimpleWorker"
    ),
    "huey": lambda: HueySystem("huey", "huey RedisHuey, -w 2 -k process"),
    BARE: lambda: BareSystem(BARE, "bare redis-py loop (ceiling)"),
}
#: Systems whose producer differs (the others send exactly as their default row does).
ENQUEUE_SYSTEMS = ("celeriac", "celeriac-transient", "celery", "dramatiq", "rq", "huey", BARE)


def label_of(key: str) -> str:
    return SYSTEMS[key]().label


# -- the plan --------------------------------------------------------------------------------------


def run_job(job: Job, server: RedisServer, workdir: Path, sizes: Sizes) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix=job.key.replace(".", "-") + "-", dir=workdir))
    run = Run(scratch, server.url, "BENCH_REDIS_URL", (APPS,))
    server.flushall()
    try:
        return measure(SYSTEMS[job.system](), run, job.measure, sizes)
    finally:
        shutil.rmtree(run.dir, ignore_errors=True)


# -- the report ------------------------------------------------------------------------------------


def _latency_note(results: dict[str, Figures], key: str, rate: int) -> str:
    """Say so when the system drains slower than the latency test sends: its figures are queueing."""
    notes = [saturation_note(results, key, rate)]
    if family(key) == "dramatiq":
        notes.append("Dramatiq's Redis consumer polls an empty queue with exponential back-off")
    return "; ".join(filter(None, notes))


def report(results: dict[str, Figures], failures: list[str], systems: list[str], sizes: Sizes) -> int:
    print(
        f"Medians of the runs; ratio = system / {label_of(REFERENCE)} "
        "(rates: >1 faster than celeriac; times: >1 slower than celeriac)."
    )
    batch_notes = {key: SYSTEMS[key]().batch_note for key in systems}
    drain_notes = {BARE: "ceiling: no ack, no bookkeeping"}
    tables = (
        (
            f"enqueue, {sizes.single:,} single calls (tasks/s, no worker running)",
            "enqueue",
            "enqueue_single",
            {},
        ),
        (
            f"enqueue, {sizes.drain:,} in batches of {sizes.batch_size:,} (tasks/s)",
            "drain",
            "enqueue_batch",
            batch_notes,
        ),
        (f"drain {sizes.drain:,} (tasks/s, worker start-up included)", "drain", "drain", drain_notes),
        ("start-up: workers started to first task done (ms)", "drain", "startup_ms", {}),
    )
    for title, measure_name, metric, notes in tables:
        lines = section(results, systems, measure_name, metric, notes, label_of, REFERENCE)
        if lines:
            print(f"\n### {title}\n")
            print("\n".join(lines))
    lines = latency_section(
        results, systems, label_of, REFERENCE, lambda key: _latency_note(results, key, sizes.rate)
    )
    if lines:
        print(
            f"\n### latency, idle workers, {sizes.rate} tasks/s for {sizes.seconds:g} s: "
            "send -> task body start (ms, nearest rank)\n"
        )
        print("\n".join(lines))
    ceilings = []
    celeriac, bare = results.get(f"{REFERENCE}.drain"), results.get(f"{BARE}.drain")
    if celeriac is not None and bare is not None:
        for metric, what in (("drain", "drain"), ("enqueue_batch", "batch enqueue / raw pipeline LPUSH")):
            c_med, b_med = celeriac.median(metric), bare.median(metric)
            ceilings.append(f"celeriac {what}: {ratio(c_med, b_med)} of the bare redis-py ceiling")
    if ceilings:
        print("\n" + "\n".join(ceilings))
    warning = extra_runs_warning(results)
    if warning:
        print(warning)
    return print_failures(failures)


def machine(server: RedisServer) -> list[str]:
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:
        HIREDIS_AVAILABLE = False
    return machine_lines(
        f"redis-server {server.version()} on 127.0.0.1:{server.port} (no persistence, FLUSHALL per job)",
        ("celery", "kombu", "dramatiq", "rq", "huey", "redis", "hiredis"),
        f" (redis-py parser: {'hiredis' if HIREDIS_AVAILABLE else 'pure Python'})",
    )


def header(argv: list[str], server: RedisServer, systems: list[str], sizes: Sizes, runs: int) -> None:
    print("# Task queues on Redis: celeriac, Celery, Dramatiq, RQ, Huey, bare redis-py")
    print("command: " + " ".join(["python3", "benchmarks/bench_redis.py", *argv]))
    for line in machine(server):
        print(line)
    print(f"workers: {WORKERS} processes for every system; the commands (cwd: a scratch directory):")
    for key in systems:
        system = SYSTEMS[key]()
        cmds = system.worker_cmds("redis://127.0.0.1:PORT/0")
        shown = " ".join(Path(cmds[0][0]).name if i == 0 else part for i, part in enumerate(cmds[0]))
        times = f" (x{len(cmds)})" if len(cmds) > 1 else ""
        print(f"  {key}: {shown}{times}")
    print(
        f"sizes: single {sizes.single:,}, batch {sizes.drain:,} in {sizes.batch_size:,}s, "
        f"drain {sizes.drain:,}, latency {sizes.rate}/s for {sizes.seconds:g} s; runs {runs}\n",
        flush=True,
    )


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> Any:
    return arg_parser(__doc__.split("\n\n")[0], list(SYSTEMS), BENCH_DIR / ".work").parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes, runs, systems, measures = choose(args, list(SYSTEMS))
    sys.path.insert(0, str(APPS))
    workdir = start_run(args.workdir, "bench-redis-")
    server = RedisServer(workdir)
    source_at_start = celeriac_source()
    started = time.monotonic()
    try:
        server.start()
        header(argv, server, systems, sizes, runs)
        jobs = plan(systems, measures, ENQUEUE_SYSTEMS)
        results, failures = run_all(jobs, runs, lambda job: run_job(job, server, workdir, sizes), label_of)
        if _CAPTURED_FROM:
            print(f"bare loop messages: {_CAPTURED_FROM[0]}, {len(_CAPTURED[0]):,} bytes each")
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every worker and the redis-server", file=sys.stderr, flush=True)
        return 130
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print_run_end(started, source_at_start)
    return report(results, failures, systems, sizes)


if __name__ == "__main__":
    bootstrap(__file__)
    sys.exit(main(sys.argv[1:]))
