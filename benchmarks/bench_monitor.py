#!/usr/bin/env python3
"""The cost of monitoring: celeriac's monitor, the bare drivers and Flower, 50 queues at 1 Hz.

    python3 benchmarks/bench_monitor.py           # or: make bench-monitor

Runs in ``benchmarks/.venv`` like the other benchmarks (created on first use, celeriac
editable from this checkout, the peers of ``benchmarks/requirements.txt``).

The target: sampling 50 queues once a second costs celeriac's monitor under 2 % of one core.

Each broker gets 50 durable queues (``monitor-bench-00`` to ``-49``) holding 1,000 messages
each (celeriac ``apply_many``, 1,000 a call), and two live worker heartbeats (``WorkerStats``
as a worker publishes them, each node consuming 25 of the queues, with run counts for them;
published again before every celeriac job), so that every sample reads lengths and heartbeats
and works out rates for every queue. Nothing consumes: the backlog is the same in every sample.

* ``sqlite``: the embedded broker, a database file in a scratch directory;
* ``redis``: the server at ``--redis-url`` (default ``redis://127.0.0.1:6379/13``), in a
  database number of the benchmark's own: it must be empty at the start, and is flushed
  (that database only) at the end;
* ``rabbitmq``: the server at ``--amqp-url`` (default ``amqp://guest:guest@127.0.0.1:5672/``)
  in a vhost of the benchmark's own (``--vhost``, default ``celeriac-bench-monitor``), made
  with ``rabbitmqctl`` (``--rabbitmqctl``) at the start and deleted at the end.

A broker that cannot be reached is skipped, with a note.

Systems, each a process of its own sampling the 50 queues every second (``--only`` and
``--skip`` take a broker, a system, or ``broker.system``):

* ``celeriac``: ``Monitor(app, History(file), queues=[...], interval=1.0).run(stop)``, as
  ``celeriac monitor`` runs it: one batched ``queue_lengths`` call, the heartbeats, the history
  written to a SQLite file, rates and alerts;
* ``celeriac-aged``: the same monitor as it is after running for an hour: its in-memory track
  of each queue (``TRACK_S``, one hour) is filled after the first sample with copies of that
  sample, one a second back in time, and its history file holds what it keeps at its
  limits (every sample for 6 hours, one a minute for 7 days, one an hour for 30 days) written
  before it starts. The rest of its work is unchanged;
* ``floor``: the cheapest loop that reads the 50 lengths with the bare driver, one connection
  kept open: redis-py, a pipeline of 50 ``LLEN`` (every message here has the default
  priority, so the ready list is the queue's whole length); py-amqp, 50 passive
  ``queue_declare`` on one channel; sqlite3, 50 ``SELECT COUNT(*) FROM messages WHERE
  state = 0 AND queue = ?`` in one read transaction (the ready messages, each queue's range
  of the broker's own index; one ``GROUP BY queue`` over the index is slower, as it compares
  every entry's queue name);
* ``flower`` (Redis only): Flower, installed into ``benchmarks/.venv`` on first use (it is not
  in ``requirements.txt``), started on the same Redis database with a Celery app declaring
  the 50 queues; the benchmark asks its ``GET /api/queues/length`` once a second (what its
  Broker page shows). Its RabbitMQ view reads the management plugin's HTTP API, which the
  server here may not have, so it is not run on RabbitMQ;
* ``idle`` (Redis and RabbitMQ): nothing samples; the broker server's own background CPU.

Measured: the sampling process starts, takes 3 warm-up samples, then its CPU time (user +
system, psutil, from outside) is read half an interval after a sample and again ``--seconds``
later (default 60, ``--quick`` 15): CPU time / wall time = percent of one core, over exactly
``--seconds`` samples. CPU time, not wall time, because other processes may share the machine.
Also: the wall time of each sample in the window (median, p95: celeriac's ``sample_s``; the
floors' driver call; for Flower the HTTP round trip seen by the benchmark), the broker server's
CPU over the same window (the process listening on the broker's port, where this user may read
it; it includes anything else that server does meanwhile), and for celeriac the CPU time of the
parts of a sample (``time.process_time`` around the broker's ``queue_lengths``, ``node_stats``
and ``queue_names`` and the history's ``add``; the rest of ``sample()`` is the analysis).
Every job is run ``--runs`` times (default 3), the brokers and systems interleaved; the tables
show the medians and the raw values.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import math
import queue
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import (
    BENCH_DIR,
    VENV,
    Figures,
    Job,
    bootstrap,
    celeriac_source,
    clean_environ,
    dist_version,
    fmt,
    machine_lines,
    markdown_table,
    mount_of,
    percentile,
    print_failures,
    print_run_end,
    ratio,
    run_all,
    start_run,
    stop_group,
    venv_bin,
)

QUEUES = 50
BACKLOG = 1_000
QUEUE_PREFIX = "monitor-bench-"
INTERVAL_S = 1.0
WARMUP_SAMPLES = 3
TARGET_PCT = 2.0
#: fake worker nodes whose heartbeats every sample reads
NODES = 2
NODE_CONCURRENCY = 2
#: the heartbeats outlive any run of the benchmark
HEARTBEAT_TTL_S = 12 * 3600.0
DEFAULT_SECONDS = 60
QUICK_SECONDS = 15
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_VHOST = "celeriac-bench-monitor"
FLOWER_VERSION = "2.2.0"
FLOWER_PATH = "/api/queues/length"
STARTUP_TIMEOUT_S = 120.0
FILL_TIMEOUT_S = 300.0
#: the parts of a celeriac sample whose CPU time is measured (the rest of ``sample`` is analysis)
PARTS = ("sample", "lengths", "heartbeats", "discovery", "history")

BROKERS = ("sqlite", "redis", "rabbitmq")
SYSTEMS = ("celeriac", "celeriac-aged", "floor", "flower", "idle")
SYSTEMS_OF = {
    "sqlite": ("celeriac", "celeriac-aged", "floor"),
    "redis": ("celeriac", "celeriac-aged", "floor", "flower", "idle"),
    "rabbitmq": ("celeriac", "celeriac-aged", "floor", "idle"),
}
BROKER_LABELS = {"sqlite": "SQLite", "redis": "Redis", "rabbitmq": "RabbitMQ"}
FLOOR_LABELS = {
    "sqlite": "floor: sqlite3, 50 COUNT(*), one per queue",
    "redis": "floor: redis-py, pipeline of 50 LLEN",
    "rabbitmq": "floor: py-amqp, 50 passive queue_declare",
}
SYSTEM_LABELS = {
    "celeriac": "celeriac monitor",
    "celeriac-aged": "celeriac monitor, after 1 h",
    "flower": f"Flower {FLOWER_VERSION}, GET {FLOWER_PATH}",
    "idle": "nothing sampling",
}

FLOWER_APP = '''"""The Celery app Flower runs with: the benchmark's Redis database and its queues."""

import os

from celery import Celery
from kombu import Queue

app = Celery("bench_monitor", broker=os.environ["BENCH_MONITOR_URL"])
names = os.environ["BENCH_MONITOR_QUEUES"].split(",")
app.conf.task_queues = [Queue(name) for name in names]
app.conf.task_default_queue = names[0]
'''


def queue_names() -> list[str]:
    return [f"{QUEUE_PREFIX}{i:02d}" for i in range(QUEUES)]


def label_of(broker: str) -> str:
    return BROKER_LABELS[broker]


def system_label(broker: str, system: str) -> str:
    return FLOOR_LABELS[broker] if system == "floor" else SYSTEM_LABELS[system]


def make_app(url: str) -> Any:
    """celeriac's app on ``url``: the 50 queues configured, a no-op task to fill them with."""
    from celeriac import Celeriac, Queue

    names = queue_names()
    app = Celeriac(
        "bench_monitor", broker=url, task_queues=[Queue(name) for name in names], task_default_queue=names[0]
    )

    @app.task(name="bench.noop", ignore_result=True)
    def noop() -> None:
        pass

    return app


# -- the sampling processes ------------------------------------------------------------------------


class CheckFailed(RuntimeError):
    """A sample read something other than the benchmark put in the broker."""


class Recorder:
    """A sampling process's records, one per sample: [monotonic start, wall s, part CPU s...].

    Prints ``ready`` once the warm-up samples are done: the parent starts its window then."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.samples: list[list[float]] = []

    @property
    def warming(self) -> bool:
        return len(self.samples) < self.warmup

    def add(self, started: float, wall_s: float, parts: Sequence[float] = ()) -> None:
        self.samples.append([started, wall_s, *parts])
        if len(self.samples) == self.warmup:
            print("ready", flush=True)


def check_lengths(lengths: Sequence[int], expected: int) -> None:
    if len(lengths) != QUEUES or sum(lengths) != expected:
        raise CheckFailed(
            f"read {len(lengths)} queues holding {sum(lengths)}; expected {QUEUES} holding {expected}"
        )


def age(monitor: Any, interval: float) -> None:
    """Fill each queue's in-memory track as an hour of samples would (copies of the first one)."""
    from celeriac.observe.monitor import TRACK_S

    steps = int(TRACK_S / interval) - 1
    for track in monitor.tracks.values():
        first = track.ticks[0]
        older = [dataclasses.replace(first, t=first.t - k * interval) for k in range(steps, 0, -1)]
        track.ticks[:0] = older
        track.times[:0] = [tick.t for tick in older]


def run_celeriac(cfg: dict[str, Any], stop: threading.Event) -> list[list[float]]:
    from celeriac.observe.history import History
    from celeriac.observe.monitor import Monitor

    app = make_app(cfg["url"])
    monitor = Monitor(app, History(cfg["history"]), queues=queue_names(), interval=cfg["interval"])
    spent = dict.fromkeys(PARTS, 0.0)

    def timed(part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[part] += time.process_time() - started

        return wrapper

    broker = monitor.broker
    broker.queue_lengths = timed("lengths", broker.queue_lengths)
    broker.node_stats = timed("heartbeats", broker.node_stats)
    broker.queue_names = timed("discovery", broker.queue_names)
    monitor.history.add = timed("history", monitor.history.add)
    monitor.sample = timed("sample", monitor.sample)
    recorder = Recorder(cfg["warmup"])
    last = dict(spent)

    def on_sample(state: Any) -> None:
        if state.error:
            raise CheckFailed(f"the sample failed: {state.error}")
        if recorder.warming:
            check_lengths([view.length for view in state.queues], cfg["expected"])
            running = [node for node in state.nodes if node.state == "running"]
            if len(running) != NODES:
                raise CheckFailed(f"read {len(running)} live worker heartbeats; expected {NODES}")
            if not recorder.samples and cfg["aged"]:
                age(monitor, cfg["interval"])
        parts = [spent[part] - last[part] for part in PARTS]
        last.update(spent)
        recorder.add(time.monotonic() - state.sample_s, state.sample_s, parts)

    try:
        monitor.run(stop, on_sample)
    finally:
        monitor.close()
        app.close()
    return recorder.samples


@contextlib.contextmanager
def floor_reader(cfg: dict[str, Any]) -> Iterator[Callable[[], list[int]]]:
    """The bare driver's cheapest read of the 50 lengths, on one connection kept open."""
    names = queue_names()
    if cfg["broker"] == "redis":
        import redis

        client = redis.Redis.from_url(cfg["url"])

        def read_redis() -> list[int]:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.llen(name)
            return pipe.execute()

        try:
            yield read_redis
        finally:
            client.close()
    elif cfg["broker"] == "rabbitmq":
        from bare_loop import connect

        conn = connect(cfg["url"])
        channel = conn.channel()

        def read_amqp() -> list[int]:
            return [channel.queue_declare(name, passive=True).message_count for name in names]

        try:
            yield read_amqp
        finally:
            conn.close()
    else:
        path = cfg["url"].removeprefix("sqlite:///")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

        count = "SELECT COUNT(*) FROM messages WHERE state = 0 AND queue = ?"

        def read_sqlite() -> list[int]:
            db.execute("BEGIN")  # one snapshot for the 50 counts
            try:
                return [db.execute(count, (name,)).fetchone()[0] for name in names]
            finally:
                db.execute("COMMIT")

        try:
            yield read_sqlite
        finally:
            db.close()


def run_floor(cfg: dict[str, Any], stop: threading.Event) -> list[list[float]]:
    """``Monitor.run``'s schedule around the bare driver's read."""
    recorder = Recorder(cfg["warmup"])
    interval = cfg["interval"]
    with floor_reader(cfg) as read:
        next_at = time.monotonic()
        while not stop.is_set():
            started, clock = time.monotonic(), time.perf_counter()
            lengths = read()
            wall = time.perf_counter() - clock
            if recorder.warming:
                check_lengths(lengths, cfg["expected"])
            recorder.add(started, wall)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at, delay = time.monotonic(), 0.0
            stop.wait(delay)
    return recorder.samples


def child(raw_config: str) -> int:
    """A sampling process: samples until its standard input closes, then prints its records."""
    cfg = json.loads(raw_config)
    sys.path.insert(0, str(BENCH_DIR / "rabbitmq_apps"))
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=wait_for_eof, name="stdin", daemon=True).start()
    runner = run_celeriac if cfg["system"].startswith("celeriac") else run_floor
    try:
        samples = runner(cfg, stop)
    except CheckFailed as exc:
        print(f"error: {exc}", flush=True)
        return 1
    print(json.dumps({"samples": samples}), flush=True)
    return 0


# -- the brokers -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Target:
    """A broker the benchmark could set up: celeriac's URL, the server process, how to clean up."""

    key: str
    url: str
    description: str
    server_pid: int | None = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self.cleanup:
            with contextlib.suppress(Exception):
                self.cleanup.pop()()


def listener_pid(url: str, default_port: int) -> int | None:
    """The local process listening on the URL's port (None when remote or not readable)."""
    import psutil

    parts = urlsplit(url)
    if (parts.hostname or "127.0.0.1") not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = parts.port or default_port
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


def fill(url: str) -> None:
    """Declare the queues, queue the backlog, publish the heartbeats; wait until every message counts."""
    app = make_app(url)
    try:
        noop = app.tasks["bench.noop"]
        names = queue_names()
        for name in names:
            app.broker.declare_queue(app.router.queue(name))
        for name in names:
            noop.apply_many([()] * BACKLOG, queue=name)
        expected = QUEUES * BACKLOG
        deadline = time.monotonic() + FILL_TIMEOUT_S
        while (total := sum(q.total for q in app.broker.queue_lengths(names))) != expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the queues hold {total} messages of the {expected} sent")
            time.sleep(0.2)
    finally:
        app.close()
    heartbeats(url)


def heartbeats(url: str) -> None:
    """Publish the fake workers' heartbeats (again: before every job, as live workers keep doing).

    On RabbitMQ they are transient messages, which a restart of the server's app (another user's
    tests may do it) drops while the persistent backlog stays; the old ones are purged first, so
    that every job reads the same two."""
    from celeriac.brokers.amqp.wire import NODES_QUEUE
    from celeriac.observe.records import RUNTIME_BUCKETS, ChildStats, TaskRuns, WorkerStats

    app = make_app(url)
    try:
        if url.startswith("amqp"):
            app.broker.purge(NODES_QUEUE)
        names = queue_names()
        now = time.time()
        share = QUEUES // NODES
        for index in range(NODES):
            consumed = names[index * share : (index + 1) * share]
            stats = WorkerStats(
                node=f"bench-monitor-{index}@{socket.gethostname()}",
                pid=100_000 + index,
                started_at=now - 600,
                at=now,
                queues=consumed,
                concurrency=NODE_CONCURRENCY,
                prefetch="4",
                master_rss_kib=30_000,
                tasks=10 * len(consumed),
                children=[
                    ChildStats(child, 100_100 + 10 * index + child, now - 600, ready_s=0.005, rss_kib=25_000)
                    for child in range(NODE_CONCURRENCY)
                ],
                runs=[
                    TaskRuns(name, "bench.noop", 10, 0, 0, 0, 0.02, [10] + [0] * len(RUNTIME_BUCKETS))
                    for name in consumed
                ],
            )
            app.broker.put_node_stats(stats.node, stats.to_json(), HEARTBEAT_TTL_S)
        if len(app.broker.node_stats()) != NODES:
            raise RuntimeError("the heartbeats were not stored")
    finally:
        app.close()


def setup_sqlite(workdir: Path) -> Target:
    path = workdir / "broker" / "broker.db"
    path.parent.mkdir()
    target = Target(
        "sqlite", f"sqlite:///{path}", f"SQLite {sqlite3.sqlite_version}, a file on {mount_of(path.parent)}"
    )
    fill(target.url)
    return target


def setup_redis(url: str) -> Target:
    import redis

    client = redis.Redis.from_url(url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    try:
        keys = client.dbsize()
        version = client.info("server").get("redis_version", "?")
    except redis.RedisError as exc:
        raise SkipBroker(f"Redis at {url} did not answer: {exc}") from None
    if keys:
        raise SkipBroker(
            f"Redis database {db} at {url} holds {keys} keys; the benchmark flushes its database at the "
            f"end, so it needs one nobody uses: pass --redis-url with another database number"
        )
    target = Target("redis", url, f"Redis {version} at {url} (that database flushed at the end)")
    target.cleanup.append(client.close)
    target.cleanup.append(client.flushdb)
    target.server_pid = listener_pid(url, 6379)
    fill(url)
    return target


def setup_rabbitmq(url: str, vhost: str, ctl: str) -> Target:
    from bench_rabbitmq import RabbitMQ

    server = RabbitMQ(url, vhost, ctl)
    try:
        server.start()
    except (SystemExit, Exception) as exc:
        server.stop()
        raise SkipBroker(f"RabbitMQ at {url} (vhost {vhost!r}) could not be used: {exc}") from None
    where = server.url.split("@")[-1]
    target = Target("rabbitmq", server.url, f"{server.server_version} at {where} (vhost deleted at the end)")
    target.cleanup.append(server.stop)
    target.server_pid = listener_pid(url, 5672)
    fill(server.url)
    return target


class SkipBroker(RuntimeError):
    """A broker the benchmark cannot use: its jobs are left out, with a note."""


# -- measuring -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    start: float  # monotonic
    end: float
    cpu_s: float | None  # the sampling process
    server_s: float | None  # the broker server

    @property
    def wall_s(self) -> float:
        return self.end - self.start


def cpu_of(process: Any) -> float | None:
    if process is None:
        return None
    times = process.cpu_times()
    return times.user + times.system


def sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


@contextlib.contextmanager
def window(pid: int | None, server_pid: int | None, seconds: int) -> Iterator[list[Window]]:
    """CPU times of ``pid`` and the server at the start and ``seconds`` after; the block runs in
    between (and must return before the end)."""
    import psutil

    sampler = psutil.Process(pid) if pid is not None else None
    server = None
    if server_pid is not None:
        with contextlib.suppress(psutil.Error):
            server = psutil.Process(server_pid)
            cpu_of(server)
    out: list[Window] = []
    start, cpu0, server0 = time.monotonic(), cpu_of(sampler), cpu_of(server)
    yield out
    sleep_until(start + seconds * INTERVAL_S)
    end, cpu1, server1 = time.monotonic(), cpu_of(sampler), cpu_of(server)
    out.append(
        Window(
            start,
            end,
            None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
            None if server0 is None or server1 is None else server1 - server0,
        )
    )


def figures_of(win: Window, samples: Sequence[Sequence[float]], expected: int) -> dict[str, float]:
    """The job's figures from its window and the records of the samples that started in it."""
    inside = [s for s in samples if win.start <= s[0] < win.end]
    if not inside:
        raise RuntimeError(f"no sample in the {win.wall_s:.1f} s window")
    if len(inside) != expected:  # a sampler that falls behind: CPU % stays right, per sample uses the count
        print(f"  note: {len(inside)} samples in the {win.wall_s:.1f} s window, not {expected}", flush=True)
    walls = [s[1] * 1000 for s in inside]
    metrics = {"sample_p50_ms": percentile(walls, 50), "sample_p95_ms": percentile(walls, 95)}
    if win.cpu_s is not None:
        metrics["cpu_pct"] = win.cpu_s / win.wall_s * 100
        metrics["cpu_ms"] = win.cpu_s / len(inside) * 1000
    if win.server_s is not None:
        metrics["server_pct"] = win.server_s / win.wall_s * 100
    if len(inside[0]) > 2:
        for index, part in enumerate(PARTS, start=2):
            metrics[f"{part}_ms"] = statistics.fmean(s[index] for s in inside) * 1000
    return metrics


def lines_of(proc: subprocess.Popen[bytes]) -> queue.Queue[str | None]:
    """The process's standard output, line by line (None at its end), read by a thread."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.decode(errors="replace").rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, name="child-stdout", daemon=True).start()
    return lines


def log_tail(path: Path, count: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-count:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: int
    warmup: int = WARMUP_SAMPLES


def measure_process(target: Target, system: str, scratch: Path, settings: Settings) -> dict[str, float]:
    """celeriac's monitor or the floor in a process of its own, measured from outside."""
    history = scratch / "history.db"
    if system == "celeriac-aged":
        aged_history(history)
    config = {
        "system": system,
        "broker": target.key,
        "url": target.url,
        "history": str(history),
        "interval": INTERVAL_S,
        "warmup": settings.warmup,
        "expected": QUEUES * BACKLOG,
        "aged": system == "celeriac-aged",
    }
    log = scratch / "sampler.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(config)]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=scratch,
            env=clean_environ(),
            start_new_session=True,
        )
    try:
        lines = lines_of(proc)
        try:
            first = lines.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            first = f"no sample within {STARTUP_TIMEOUT_S:.0f} s"
        if first != "ready":
            raise RuntimeError(f"{first or 'the sampling process exited'}\n--- its log ---\n{log_tail(log)}")
        time.sleep(INTERVAL_S / 2)  # the window starts between two samples
        with window(proc.pid, target.server_pid, settings.seconds) as measured:
            pass
        assert proc.stdin is not None
        proc.stdin.close()
        last = None
        while (line := lines.get(timeout=STARTUP_TIMEOUT_S)) is not None:
            last = line
        if proc.wait(timeout=STARTUP_TIMEOUT_S) != 0 or last is None or not last.startswith("{"):
            raise RuntimeError(f"{last or 'no records'}\n--- its log ---\n{log_tail(log)}")
        samples = json.loads(last)["samples"]
    finally:
        if proc.poll() is None:
            stop_group(proc)
    return figures_of(measured[0], samples, settings.seconds)


def aged_history(path: Path) -> None:
    """A history file as the monitor leaves it at its limits: every sample for 6 hours, one a
    minute for 7 days, one an hour for 30 days, for every queue and node (a steady backlog)."""
    from celeriac.observe.history import MINUTE_KEEP_S, RAW_KEEP_S, History, NodePoint, QueuePoint

    History(path).close()  # the schema
    queue_fields = [f.name for f in dataclasses.fields(QueuePoint)]
    node_fields = [f.name for f in dataclasses.fields(NodePoint)]
    now = time.time()
    tiers = (
        (0, INTERVAL_S, now - RAW_KEEP_S + INTERVAL_S, now - INTERVAL_S),
        (1, 60.0, now - MINUTE_KEEP_S, (now // 60) * 60 - 60),
        (2, 3600.0, now - 30 * 86400.0, (now // 3600) * 3600 - 3600),
    )
    nodes = [f"bench-monitor-{index}@{socket.gethostname()}" for index in range(NODES)]
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        for tier, step, first, last in tiers:
            start = math.ceil(first / step) * step if tier else first
            times = [start + k * step for k in range(int((last - start) // step) + 1)]
            db.executemany(
                f"INSERT INTO samples (tier, {', '.join(queue_fields)}) "
                f"VALUES ({', '.join('?' * (len(queue_fields) + 1))})",
                (
                    (tier, t, name, BACKLOG, 0, 0, 0, None, 10, 0, 0.02, 10 + BACKLOG, None, None, None)
                    for name in queue_names()
                    for t in times
                ),
            )
            db.executemany(
                f"INSERT INTO nodes (tier, {', '.join(node_fields)}) "
                f"VALUES ({', '.join('?' * (len(node_fields) + 1))})",
                ((tier, t, node, NODE_CONCURRENCY, 30_000, 50_000) for node in nodes for t in times),
            )
        db.execute("COMMIT")
    finally:
        db.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flower_lengths(conn: http.client.HTTPConnection) -> list[int]:
    conn.request("GET", FLOWER_PATH)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {FLOWER_PATH}: HTTP {response.status}: {body[:200]!r}")
    return [int(q["messages"]) for q in json.loads(body)["active_queues"]]


def measure_flower(target: Target, scratch: Path, settings: Settings) -> dict[str, float]:
    """Flower on the same Redis database, asked for the queue lengths once a second."""
    (scratch / "flower_app.py").write_text(FLOWER_APP)
    port = free_port()
    env = clean_environ()
    env.update(
        PYTHONPATH=str(scratch),
        FLOWER_UNAUTHENTICATED_API="true",
        BENCH_MONITOR_URL=target.url,
        BENCH_MONITOR_QUEUES=",".join(queue_names()),
    )
    cmd = [venv_bin("celery"), "-A", "flower_app", "flower", "--address=127.0.0.1", f"--port={port}"]
    log = scratch / "flower.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=scratch, env=env, start_new_session=True
        )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                check_lengths(flower_lengths(conn), QUEUES * BACKLOG)
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Flower did not answer: {exc!r}\n--- its log ---\n{log_tail(log)}"
                    ) from None
                time.sleep(0.2)
        next_at = time.monotonic()
        for _ in range(settings.warmup):
            next_at += INTERVAL_S
            sleep_until(next_at)
            check_lengths(flower_lengths(conn), QUEUES * BACKLOG)
        samples: list[list[float]] = []
        with window(proc.pid, target.server_pid, settings.seconds) as measured:
            start = time.monotonic()
            for k in range(settings.seconds):
                sleep_until(start + (k + 0.5) * INTERVAL_S)
                started, clock = time.monotonic(), time.perf_counter()
                lengths = flower_lengths(conn)
                samples.append([started, time.perf_counter() - clock])
                if sum(lengths) != QUEUES * BACKLOG:
                    raise CheckFailed(f"Flower read {sum(lengths)} messages")
        if proc.poll() is not None:
            raise RuntimeError(f"Flower exited\n--- its log ---\n{log_tail(log)}")
    finally:
        conn.close()
        stop_group(proc)
    return figures_of(measured[0], samples, settings.seconds)


def measure_idle(target: Target, settings: Settings) -> dict[str, float]:
    if target.server_pid is None:
        raise RuntimeError("the broker server's process cannot be read here")
    time.sleep(INTERVAL_S / 2)
    with window(None, target.server_pid, settings.seconds) as measured:
        pass
    return {"server_pct": (measured[0].server_s or 0.0) / measured[0].wall_s * 100}


def ensure_flower() -> str | None:
    """Flower's version, installed into benchmarks/.venv first if it is not there; None if it cannot be."""
    version = dist_version("flower")
    if version != "not installed":
        return version
    print(f"installing flower=={FLOWER_VERSION} into {VENV} (only this benchmark uses it) ...", flush=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, f"flower=={FLOWER_VERSION}"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"note: flower could not be installed, so it is left out: {done.stderr.strip()[-300:]}")
        return None
    version = dist_version("flower")
    return None if version == "not installed" else version


def run_job(job: Job, targets: dict[str, Target], workdir: Path, settings: Settings) -> dict[str, float]:
    target = targets[job.system]
    if job.measure == "idle":
        return measure_idle(target, settings)
    if job.measure.startswith("celeriac"):
        heartbeats(target.url)
    scratch = Path(tempfile.mkdtemp(prefix=job.key.replace(".", "-") + "-", dir=workdir))
    try:
        if job.measure == "flower":
            return measure_flower(target, scratch, settings)
        return measure_process(target, job.measure, scratch, settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- the report ------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def pct_runs(values: Sequence[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "—"


NOTES = {
    ("sqlite", "celeriac"): "embedded: the broker's queries run in the monitor's process",
    ("sqlite", "celeriac-aged"): "embedded: the broker's queries run in the monitor's process",
    ("sqlite", "floor"): "ready messages only, through the broker's partial index",
    ("redis", "flower"): "a new Redis connection per request, 4 LLEN a queue; time = HTTP round trip",
    ("rabbitmq", "celeriac"): "heartbeats: a new connection per sample (basic.get of each)",
    ("rabbitmq", "celeriac-aged"): "heartbeats: a new connection per sample (basic.get of each)",
}


def main_table(results: dict[str, Figures], jobs: Sequence[Job]) -> list[str]:
    rows = []
    for job in jobs:
        fig = results.get(job.key)
        if fig is None:
            continue
        floor = results.get(f"{job.system}.floor", Figures()).median("cpu_pct")
        cpu = fig.median("cpu_pct")
        rows.append(
            (
                label_of(job.system),
                system_label(job.system, job.measure),
                pct(cpu),
                pct_runs(fig.values.get("cpu_pct")),
                ratio(cpu, floor) if job.measure not in ("floor", "idle") else "—",
                fmt(fig.median("cpu_ms")),
                fmt(fig.median("sample_p50_ms")),
                fmt(fig.median("sample_p95_ms")),
                pct(fig.median("server_pct")),
                NOTES.get((job.system, job.measure), ""),
            )
        )
    return markdown_table(
        (
            "broker",
            "system",
            "CPU, % of one core",
            "runs",
            "ratio / floor",
            "CPU per sample, ms",
            "sample time p50, ms",
            "sample time p95, ms",
            "broker server CPU, %",
            "note",
        ),
        rows,
    )


def parts_table(results: dict[str, Figures], jobs: Sequence[Job]) -> list[str]:
    rows = []
    for job in jobs:
        fig = results.get(job.key)
        if fig is None or fig.median("sample_ms") is None:
            continue
        sample = fig.median("sample_ms") or 0.0
        parts = [fig.median(f"{part}_ms") or 0.0 for part in PARTS[1:]]
        rows.append(
            (
                label_of(job.system),
                system_label(job.system, job.measure),
                fmt(fig.median("cpu_ms")),
                fmt(sample),
                *(fmt(value) for value in parts),
                fmt(max(0.0, sample - sum(parts))),
            )
        )
    return markdown_table(
        (
            "broker",
            "system",
            "whole process (psutil)",
            "in sample()",
            "queue lengths",
            "heartbeats",
            "queue discovery (every 30 s)",
            "history write",
            "analysis (the rest)",
        ),
        rows,
    )


def verdicts(results: dict[str, Figures], brokers: Sequence[str]) -> list[str]:
    lines = []
    for broker in brokers:
        for system in ("celeriac", "celeriac-aged"):
            fig = results.get(f"{broker}.{system}")
            cpu = fig.median("cpu_pct") if fig is not None else None
            if fig is None or cpu is None:
                continue
            verdict = "PASS" if cpu < TARGET_PCT else "FAIL"
            lines.append(
                f"{verdict}: {label_of(broker)}, {system_label(broker, system)}: {cpu:.2f} % of one core "
                f"(runs {pct_runs(fig.values['cpu_pct'])}; highest {max(fig.values['cpu_pct']):.2f} %)"
            )
    return lines


def report(results: dict[str, Figures], failures: list[str], jobs: Sequence[Job], settings: Settings) -> int:
    brokers = list(dict.fromkeys(job.system for job in jobs))
    print(
        f"Medians of the runs. CPU: user + system time of the sampling process over {settings.seconds} "
        f"samples ({settings.seconds} s), psutil from outside (10 ms ticks); ratio = system / the "
        "broker's floor; sample time: wall time of one sample."
    )
    lines = main_table(results, jobs)
    if lines:
        print(f"\n### sampling {QUEUES} queues of {BACKLOG:,} messages and {NODES} heartbeats at 1 Hz\n")
        print("\n".join(lines))
    lines = parts_table(results, jobs)
    if lines:
        print("\n### celeriac: CPU per sample by part, ms (time.process_time in the monitor's process)\n")
        print("\n".join(lines))
    lines = verdicts(results, brokers)
    if lines:
        print(
            f"\ntarget: sampling {QUEUES} queues at 1 Hz costs celeriac's monitor "
            f"under {TARGET_PCT:g} % of one core"
        )
        print("\n".join(lines))
    return print_failures(failures)


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported); default 3")
    parser.add_argument(
        "--seconds",
        type=int,
        default=None,
        help=f"measured samples (one a second); default {DEFAULT_SECONDS}",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_SECONDS} s windows")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated brokers, systems or broker.system to run (default all): "
        f"{', '.join(BROKERS)}; {', '.join(SYSTEMS)}",
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated brokers, systems or broker.system to leave out"
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"an empty Redis database, flushed at the end; default {DEFAULT_REDIS_URL}",
    )
    parser.add_argument(
        "--amqp-url",
        default=DEFAULT_AMQP_URL,
        help=f"the RabbitMQ server (its path is ignored); default {DEFAULT_AMQP_URL}",
    )
    parser.add_argument(
        "--vhost", default=DEFAULT_VHOST, help=f"the vhost made and deleted; default {DEFAULT_VHOST}"
    )
    parser.add_argument(
        "--rabbitmqctl", default="rabbitmqctl", help="the rabbitmqctl command (split like a shell)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=BENCH_DIR / ".work", help="parent of the scratch directories"
    )
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> list[Job]:
    def names(text: str) -> set[str]:
        chosen = {n.strip() for n in text.split(",") if n.strip()}
        known = {*BROKERS, *SYSTEMS, *(f"{b}.{s}" for b in BROKERS for s in SYSTEMS_OF[b])}
        if chosen - known:
            raise SystemExit(
                f"unknown: {', '.join(sorted(chosen - known))}; known: {', '.join(sorted(known))}"
            )
        return chosen

    def matches(job: Job, chosen: set[str]) -> bool:
        return bool({job.system, job.measure, job.key} & chosen)

    only, skip = names(args.only), names(args.skip)
    jobs = [Job(broker, system) for broker in BROKERS for system in SYSTEMS_OF[broker]]
    jobs = [job for job in jobs if (not only or matches(job, only)) and not matches(job, skip)]
    if not jobs:
        raise SystemExit("nothing selected")
    return jobs


def set_up(jobs: list[Job], args: argparse.Namespace, workdir: Path, targets: dict[str, Target]) -> list[Job]:
    """Set up every broker the jobs need (skipping, with a note, those that cannot be used)."""
    for broker in dict.fromkeys(job.system for job in jobs):
        print(
            f"setting up {label_of(broker)}: {QUEUES} queues x {BACKLOG:,} messages, {NODES} heartbeats ...",
            flush=True,
        )
        try:
            if broker == "sqlite":
                targets[broker] = setup_sqlite(workdir)
            elif broker == "redis":
                targets[broker] = setup_redis(args.redis_url)
            else:
                targets[broker] = setup_rabbitmq(args.amqp_url, args.vhost, args.rabbitmqctl)
        except SkipBroker as exc:
            print(f"note: {label_of(broker)} skipped: {exc}", flush=True)
        except Exception as exc:
            print(f"note: {label_of(broker)} skipped: setting it up failed: {exc!r}", flush=True)
    kept = []
    for job in jobs:
        target = targets.get(job.system)
        if target is None:
            continue
        if job.measure == "idle" and target.server_pid is None:
            print(f"note: {job.key} left out: the server's process cannot be read here", flush=True)
            continue
        kept.append(job)
    if any(job.measure == "flower" for job in kept) and ensure_flower() is None:
        kept = [job for job in kept if job.measure != "flower"]
    return kept


def header(
    argv: list[str], targets: dict[str, Target], jobs: list[Job], settings: Settings, runs: int
) -> None:
    print("# Monitor sampling cost: celeriac's monitor, the bare drivers, Flower")
    print("command: " + " ".join(["python3", "benchmarks/bench_monitor.py", *argv]))
    brokers = "brokers: " + "; ".join(target.description for target in targets.values())
    for line in machine_lines(brokers, ("redis", "hiredis", "amqp", "celery", "flower", "psutil")):
        print(line)
    for target in targets.values():
        if target.server_pid is not None:
            import psutil

            with contextlib.suppress(psutil.Error):
                server = psutil.Process(target.server_pid)
                print(f"{label_of(target.key)} server: {server.name()} (pid {target.server_pid})")
    print(
        f"workload: {QUEUES} queues x {BACKLOG:,} messages, {NODES} worker heartbeats; one sample a second; "
        f"{settings.warmup} warm-up samples, then {settings.seconds} measured; runs {runs}"
    )
    print("jobs: " + ", ".join(job.key for job in jobs) + "\n", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    jobs = selected(args)
    settings = Settings(args.seconds or (QUICK_SECONDS if args.quick else DEFAULT_SECONDS))
    runs = max(1, args.runs)
    sys.path.insert(0, str(BENCH_DIR / "rabbitmq_apps"))
    workdir = start_run(args.workdir, "bench-monitor-")
    targets: dict[str, Target] = {}
    source_at_start = celeriac_source()
    started = time.monotonic()
    try:
        jobs = set_up(jobs, args, workdir, targets)
        if not jobs:
            print("no broker could be used")
            return 1
        header(argv, targets, jobs, settings, runs)
        results, failures = run_all(
            jobs, runs, lambda job: run_job(job, targets, workdir, settings), label_of
        )
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up the brokers", file=sys.stderr, flush=True)
        return 130
    finally:
        for target in targets.values():
            target.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print_run_end(started, source_at_start)
    return report(results, failures, jobs, settings)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child(sys.argv[2]))
    bootstrap(__file__)
    sys.exit(main(sys.argv[1:]))
