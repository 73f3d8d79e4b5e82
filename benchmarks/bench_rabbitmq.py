#!/usr/bin/env python3
"""Task queues on RabbitMQ side by side: celeriac, Celery, Dramatiq and a bare py-amqp loop.

    python3 benchmarks/bench_rabbitmq.py         # or: make bench-rabbitmq

The method is ``bench_redis.py``'s (same harness, ``_common.py``): its own virtualenv
``benchmarks/.venv``, two worker processes per system, a no-op task whose body appends
one byte to a file (completions counted by the file's size, never by a round trip to
the broker), every figure measured ``--runs`` times (default 3) with the systems
interleaved, the medians, their ratio to celeriac (durable queue, persistent messages,
early ack: its defaults) and the raw values.

The broker is a RabbitMQ that is already running (``--url``, default
``amqp://guest:guest@127.0.0.1:5672/``). The benchmark works in a vhost of its own
(``--vhost``, default ``celeriac-bench``), which it creates with ``rabbitmqctl``
(``--rabbitmqctl``: the command, e.g. ``docker exec rabbit rabbitmqctl`` for a server
in a container), deletes and creates again before every job (so no system sees
another's queues or messages) and deletes at the end.

Measured:

1. enqueue, single calls: 5,000 sends one by one, no worker running;
2. enqueue, batch: 20,000 sends through each system's batch API in batches of 1,000
   (celeriac ``apply_many``, Celery ``group(...).apply_async()``; Dramatiq has none:
   a loop of ``send()``), and, as the ceiling, raw py-amqp publishes;
   every enqueue figure is timed until the queue holds every message (a passive
   ``queue.declare`` on a connection of the benchmark's), since RabbitMQ takes
   publishes without a reply unless the publisher asks for confirms;
3. drain: 20,000 tasks queued with the workers stopped; time from starting the workers
   to the 20,000th task body having run (start-up included), and the start-up alone
   (workers started to first task done);
4. latency: workers started and idle, 200 tasks/s sent for 10 s (paced with a monotonic
   clock), each carrying its enqueue time (``time.time()``) as its argument; the body
   records ``time.time()`` at its start; p50, p95, p99 (nearest rank) in ms.

Systems (``--only``/``--skip`` take these keys or their family, the part before ``-``):

* ``celeriac``: ``celeriac worker -A celeriac_app:app -c 2``, durable queue ``celery``,
  persistent messages, early ack (its defaults; the reference of every ratio);
  ``celeriac-late``: ``task_acks_late=True``; ``celeriac-transient``:
  ``Queue("transient", durable=False)`` as ``task_default_queue``; ``celeriac-auto``:
  ``--prefetch-multiplier auto`` (the self-tuning window: ``basic.qos`` follows it).
* ``celery``: ``celery worker -c 2`` (prefork), defaults (durable queue, persistent
  messages, prefetch 4 per process), no result backend, tasks ``ignore_result=True``;
  ``celery-transient``: a kombu ``Queue('transient', Exchange('transient',
  delivery_mode=1), routing_key='transient', durable=False)`` as the default queue and
  ``task_default_delivery_mode='transient'``; ``celery-tuned``: defaults with
  ``--prefetch-multiplier 64``.
* ``dramatiq``: ``RabbitmqBroker`` (pika; durable queue, persistent messages), default
  middleware, ``--processes 2 --threads 1``.
* ``bare`` (``rabbitmq_apps/bare_loop.py``): two processes, each ``basic.qos`` 100 and
  ``basic.consume`` on the durable queue ``celery``, JSON-decode the body, call the
  function, ack ``multiple=True`` every 100th delivery. The ceiling: the report gives
  celeriac's drain as a fraction of it. Its producer publishes persistent messages,
  celeriac's own (captured once from ``apply_many``) where celeriac can be used.

The report ends with the issue's two targets, met or missed: celeriac's drain at least
5x Celery's (both with their defaults), and celeriac's transient queue at least 1.5x its
durable one. Celery's worker logs at WARNING (``-l warning``), celeriac's likewise.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from _common import (
    BENCH_DIR,
    WORKERS,
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
from _common import (
    CeleriacSystem as CeleriacSide,
)

APPS = BENCH_DIR / "rabbitmq_apps"

#: Celery's tuned row: messages reserved per child process (Celery's default is 4).
CELERY_TUNED_PREFETCH = 64
#: The reference every ratio is taken against: celeriac's defaults (durable queue, early ack).
REFERENCE = "celeriac"
BARE = "bare"
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_VHOST = "celeriac-bench"
#: How long the enqueue figures wait for the queue to hold every message sent.
ENQUEUED_TIMEOUT_S = 120.0
#: How long a job waits for a RabbitMQ node whose app is stopped to run again.
NODE_WAIT_S = 120.0
#: The issue's targets: (what, numerator job, denominator job, at least).
TARGETS = (
    ("celeriac drain >= 5x Celery's (both defaults: durable, persistent)", "celeriac", "celery", 5.0),
    ("celeriac transient drain >= 1.5x celeriac durable", "celeriac-transient", "celeriac", 1.5),
)


# -- the RabbitMQ server and the benchmark's vhost -------------------------------------------------


class RabbitMQ:
    """The running RabbitMQ at ``url``; the benchmark's vhost, made and removed with rabbitmqctl."""

    def __init__(self, url: str, vhost: str, ctl: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "pyamqp"):
            raise SystemExit(f"--url {url!r}: use amqp://user:password@host:port/")
        self.base = f"amqp://{parts.netloc}"
        self.user = unquote(parts.username or "guest")
        self.vhost = vhost
        self.ctl = shlex.split(ctl)
        self.server_version = "?"
        self.created = False

    @property
    def url(self) -> str:
        """The broker URL every system uses: the benchmark's vhost."""
        return f"{self.base}/{quote(self.vhost, safe='')}"

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run([*self.ctl, *args], check=False, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise SystemExit(
                f"{self.ctl[0]} not found: the benchmark manages its vhost with rabbitmqctl "
                "(--rabbitmqctl, e.g. 'docker exec rabbit rabbitmqctl')"
            ) from None
        if check and done.returncode != 0:
            raise RuntimeError(f"{shlex.join([*self.ctl, *args])}: {(done.stderr or done.stdout).strip()}")
        return done

    def _delete_vhost(self) -> None:
        done = self._ctl("delete_vhost", self.vhost, check=False)
        if done.returncode != 0 and "not exist" not in done.stderr + done.stdout:
            raise RuntimeError(f"delete_vhost {self.vhost}: {(done.stderr or done.stdout).strip()}")

    def reset(self) -> None:
        """An empty vhost: deleted (its queues, messages and connections with it) and made again.

        If rabbitmqctl fails (someone restarting the shared server, say), waits for the node and
        tries again, for up to :data:`NODE_WAIT_S`."""
        deadline = time.monotonic() + NODE_WAIT_S
        while True:
            try:
                self._delete_vhost()
                self._ctl("add_vhost", self.vhost)
                self.created = True
                self._ctl("set_permissions", "-p", self.vhost, self.user, ".*", ".*", ".*")
                return
            except RuntimeError as exc:
                if time.monotonic() > deadline:
                    raise
                print(f"  note: {str(exc).splitlines()[0]}: waiting for RabbitMQ, then again", flush=True)
                self._ctl("await_startup", "--timeout", "10", check=False)
                time.sleep(1.0)

    def start(self) -> None:
        """Make the vhost, check the server takes connections to it, note its version."""
        listed = self._ctl("list_vhosts", "-q").stdout.split()
        if self.vhost in listed:
            print(f"note: vhost {self.vhost!r} exists already (left by an earlier run?): emptied", flush=True)
        self.reset()
        from bare_loop import connect

        try:
            conn = connect(self.url)
        except Exception as exc:
            raise SystemExit(f"cannot connect to {self.url}: {exc!r}") from None
        props = conn.server_properties
        self.server_version = f"{props.get('product', 'RabbitMQ')} {props.get('version', '?')}"
        conn.close()

    def stop(self) -> None:
        if self.created:
            with contextlib.suppress(Exception):
                self._delete_vhost()
            self.created = False


# -- the systems behind one interface --------------------------------------------------------------


class Probe:
    """A py-amqp connection of the benchmark's own, to count a queue's ready messages."""

    def __init__(self, url: str) -> None:
        from bare_loop import connect

        self.conn = connect(url)
        self.channel = self.conn.channel()

    def ready(self, queue: str) -> int:
        """Messages ready in ``queue``; 0 while it does not exist yet."""
        import amqp

        try:
            return int(self.channel.queue_declare(queue, passive=True).message_count)
        except amqp.exceptions.NotFound:
            self.channel = self.conn.channel()  # the failed passive declare closed the channel
            return 0

    def wait_for(self, queue: str, total: int) -> None:
        deadline = time.perf_counter() + ENQUEUED_TIMEOUT_S
        while (ready := self.ready(queue)) < total:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"queue {queue!r} holds {ready} of the {total} messages sent")
            time.sleep(0.001)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class RabbitSystem(System):
    """A system on RabbitMQ: its enqueue figures end when the queue ``self.queue`` holds them all."""

    queue = "celery"

    def __init__(self, key: str, label: str, **options: Any) -> None:
        super().__init__(key, label, **options)
        self.probe: Probe | None = None

    def open(self, url: str) -> None:
        self.probe = Probe(url)
        self.connect(url)

    def connect(self, url: str) -> None:
        """Connect the producer (outside the timed part)."""
        raise NotImplementedError

    def disconnect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.disconnect()
        finally:
            if self.probe is not None:
                self.probe.close()
            self.probe = None

    def wait_enqueued(self, total: int) -> None:
        assert self.probe is not None
        self.probe.wait_for(self.queue, total)


class CeleriacSystem(RabbitSystem, CeleriacSide):
    """celeriac's producer and workers (the Redis benchmark's), behind the queue probe."""

    def connect(self, url: str) -> None:
        CeleriacSide.open(self, url)

    def disconnect(self) -> None:
        CeleriacSide.close(self)


class CelerySystem(RabbitSystem):
    batch_note = "group(noop.s() x 1000).apply_async(): one publish per task, no confirms"

    def __init__(self, key: str, label: str, queue: str = "celery", prefetch: int | None = None) -> None:
        super().__init__(key, label)
        self.queue, self.prefetch = queue, prefetch
        self.app: Any = None
        self.noop: Any = None
        self.latency: Any = None

    def connect(self, url: str) -> None:
        from celery_app import make_app

        self.app, self.noop, self.latency = make_app(url, self.queue)
        with self.app.pool.acquire(block=True) as conn:  # a pooled connection, opened untimed
            conn.ensure_connection(max_retries=3)
            self.app.amqp.queues[self.queue](conn.default_channel).declare()

    def disconnect(self) -> None:
        from kombu import pools

        if self.app is not None:
            self.app.close()
        self.app = None
        # Celery's producer connections live in kombu's process-wide pools, keyed by URL: the
        # next job's app would get this one's connection, which the vhost's deletion closed
        pools.reset()

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
        cmd = [venv_bin("celery"), "-A", "celery_app", "worker", "-c", str(WORKERS), "-l", "warning"]
        if self.prefetch is not None:
            cmd += ["--prefetch-multiplier", str(self.prefetch)]
        return [cmd]

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_QUEUE": self.queue}


class DramatiqSystem(RabbitSystem):
    batch_note = "no batch API (group().run() sends one by one): a loop of send(), no confirms"
    queue = "default"

    def __init__(self, key: str, label: str) -> None:
        super().__init__(key, label)
        self.broker: Any = None
        self.noop: Any = None
        self.latency: Any = None

    def connect(self, url: str) -> None:
        from dramatiq_app import make_broker

        self.broker, self.noop, self.latency = make_broker(url)
        self.broker.declare_queue(self.queue, ensure=True)

    def disconnect(self) -> None:
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


#: celeriac's no-op messages, captured once (see :func:`celeriac_messages`), and where they came from.
_CAPTURED: list[Any] = []
_CAPTURED_FROM: list[str] = []


def celeriac_messages(url: str, count: int) -> list[Any]:
    """``count`` no-op messages (py-amqp ``Message``s) as celeriac publishes them: captured from
    a real ``apply_many`` (the queue is deleted afterwards); built by ``bare_loop.task_message``
    if celeriac's RabbitMQ broker cannot be used."""
    import amqp
    from bare_loop import connect, task_message

    if len(_CAPTURED) >= count:
        return _CAPTURED[:count]
    _CAPTURED.clear()
    _CAPTURED_FROM.clear()
    conn = connect(url)
    try:
        from celeriac_app import make_app

        app, noop, _ = make_app(url, "celery", False)
        try:
            noop.apply_many([()] * count)
        finally:
            app.close()
        channel = conn.channel()
        channel.auto_decode = False
        while len(_CAPTURED) < count and (message := channel.basic_get("celery", no_ack=True)) is not None:
            _CAPTURED.append(amqp.Message(message.body, **message.properties))
        if len(_CAPTURED) < count:
            raise RuntimeError(f"found {len(_CAPTURED)} of the {count} messages in the queue 'celery'")
        channel.queue_delete("celery")
        _CAPTURED_FROM.append("celeriac's own (captured from apply_many)")
    except Exception as exc:  # celeriac's RabbitMQ broker missing or broken: build them
        with contextlib.suppress(Exception):
            conn.channel().queue_delete("celery")
        _CAPTURED[:] = [task_message("bench.noop", []) for _ in range(count)]
        _CAPTURED_FROM.append(f"built by bare_loop.task_message (celeriac unavailable: {exc!r:.200})")
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    return _CAPTURED[:count]


class BareSystem(RabbitSystem):
    batch_note = "ceiling: raw py-amqp basic_publish of celeriac's messages, persistent, no confirms"

    def __init__(self, key: str, label: str) -> None:
        super().__init__(key, label)
        self.conn: Any = None
        self.channel: Any = None
        self.messages: list[Any] = []
        self.next = 0

    def connect(self, url: str) -> None:
        from bare_loop import connect, declare

        self.messages = celeriac_messages(url, 1_000)
        self.conn = connect(url)
        self.channel = self.conn.channel()
        declare(self.channel, self.queue)

    def disconnect(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = self.channel = None

    def send_one(self) -> None:
        self.channel.basic_publish(self.messages[self.next % len(self.messages)], "", self.queue)
        self.next += 1

    def send_latency(self, sent: float) -> None:
        from bare_loop import task_message

        self.channel.basic_publish(task_message("bench.latency", [sent]), "", self.queue)

    def send_many(self, total: int, batch: int) -> None:
        messages, publish, queue = self.messages, self.channel.basic_publish, self.queue
        for index in range(total):
            publish(messages[index % len(messages)], "", queue)

    def worker_cmds(self, url: str) -> list[list[str]]:
        return [[sys.executable, str(APPS / "bare_loop.py")] for _ in range(WORKERS)]

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_QUEUE": self.queue}


#: Every system in one configuration, in table order.
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
    "celery": lambda: CelerySystem("celery", "celery defaults (durable, prefork, prefetch 4)"),
    "celery-transient": lambda: CelerySystem(
        "celery-transient", "celery transient queue, delivery_mode transient", queue="transient"
    ),
    "celery-tuned": lambda: CelerySystem(
        "celery-tuned",
        f"celery TUNED: worker_prefetch_multiplier={CELERY_TUNED_PREFETCH}",
        prefetch=CELERY_TUNED_PREFETCH,
    ),
    "dramatiq": lambda: DramatiqSystem("dramatiq", "dramatiq RabbitmqBroker, 2 processes x 1 thread"),
    BARE: lambda: BareSystem(BARE, "bare py-amqp loop (ceiling)"),
}
#: Systems whose producer differs (the others send exactly as their default row does).
ENQUEUE_SYSTEMS = ("celeriac", "celeriac-transient", "celery", "celery-transient", "dramatiq", BARE)


def label_of(key: str) -> str:
    return SYSTEMS[key]().label


# -- the plan --------------------------------------------------------------------------------------


def run_job(job: Job, server: RabbitMQ, workdir: Path, sizes: Sizes) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix=job.key.replace(".", "-") + "-", dir=workdir))
    # the apps on the path, and benchmarks/ for rabbitmq_apps/_marks.py's import of redis_apps
    run = Run(scratch, server.url, "BENCH_AMQP_URL", (APPS, BENCH_DIR))
    server.reset()
    try:
        return measure(SYSTEMS[job.system](), run, job.measure, sizes)
    finally:
        shutil.rmtree(run.dir, ignore_errors=True)


# -- the report ------------------------------------------------------------------------------------


def targets(results: dict[str, Figures]) -> list[str]:
    """The issue's targets on the drain medians: met, missed, or not measured."""
    lines = []
    for what, top, bottom, at_least in TARGETS:
        a = results.get(f"{top}.drain", Figures()).median("drain")
        b = results.get(f"{bottom}.drain", Figures()).median("drain")
        if a is None or not b:
            lines.append(f"target {what}: not measured ({top} and {bottom} drain both needed)")
            continue
        verdict = "MET" if a / b >= at_least else "MISSED"
        lines.append(
            f"target {what}: {verdict}: {a / b:.2f}x ({top} {a:,.0f}/s, {bottom} {b:,.0f}/s, median drain)"
        )
    return lines


def report(results: dict[str, Figures], failures: list[str], systems: list[str], sizes: Sizes) -> int:
    print(
        f"Medians of the runs; ratio = system / {label_of(REFERENCE)} "
        "(rates: >1 faster than celeriac; times: >1 slower than celeriac)."
    )
    batch_notes = {key: SYSTEMS[key]().batch_note for key in systems}
    drain_notes = {BARE: "ceiling: qos 100, one multiple ack per 100, no bookkeeping"}
    tables = (
        (
            f"enqueue, {sizes.single:,} single calls (tasks/s, no worker running, until all queued)",
            "enqueue",
            "enqueue_single",
            {},
        ),
        (
            f"enqueue, {sizes.drain:,} in batches of {sizes.batch_size:,} (tasks/s, until all queued)",
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
        results, systems, label_of, REFERENCE, lambda key: saturation_note(results, key, sizes.rate)
    )
    if lines:
        print(
            f"\n### latency, idle workers, {sizes.rate} tasks/s for {sizes.seconds:g} s: "
            "send -> task body start (ms, nearest rank)\n"
        )
        print("\n".join(lines))
    print()
    celeriac, bare = results.get(f"{REFERENCE}.drain"), results.get(f"{BARE}.drain")
    if celeriac is not None and bare is not None:
        c_med, b_med = celeriac.median("drain"), bare.median("drain")
        print(f"celeriac drain: {ratio(c_med, b_med)} of the bare py-amqp ceiling")
    if "drain" in {key.split(".")[1] for key in results}:
        print("\n".join(targets(results)))
    warning = extra_runs_warning(results)
    if warning:
        print(warning)
    return print_failures(failures)


def machine(server: RabbitMQ) -> list[str]:
    return machine_lines(
        f"broker: {server.server_version} at {server.url.split('@')[-1]} "
        f"(vhost {server.vhost!r}, deleted and made again before every job)",
        ("celery", "kombu", "amqp", "dramatiq", "pika"),
    )


def header(argv: list[str], server: RabbitMQ, systems: list[str], sizes: Sizes, runs: int) -> None:
    print("# Task queues on RabbitMQ: celeriac, Celery, Dramatiq, bare py-amqp")
    print("command: " + " ".join(["python3", "benchmarks/bench_rabbitmq.py", *argv]))
    for line in machine(server):
        print(line)
    print(f"workers: {WORKERS} processes for every system; the commands (cwd: a scratch directory):")
    for key in systems:
        cmds = SYSTEMS[key]().worker_cmds(server.url)
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
    parser = arg_parser(__doc__.split("\n\n")[0], list(SYSTEMS), BENCH_DIR / ".work")
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"the RabbitMQ server (its path is ignored); default {DEFAULT_URL}"
    )
    parser.add_argument(
        "--vhost", default=DEFAULT_VHOST, help=f"the vhost made, emptied and deleted; default {DEFAULT_VHOST}"
    )
    parser.add_argument(
        "--rabbitmqctl",
        default="rabbitmqctl",
        help="the rabbitmqctl command for that server (split like a shell)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes, runs, systems, measures = choose(args, list(SYSTEMS))
    sys.path.insert(0, str(APPS))
    workdir = start_run(args.workdir, "bench-rabbitmq-")
    server = RabbitMQ(args.url, args.vhost, args.rabbitmqctl)
    source_at_start = celeriac_source()
    started = time.monotonic()
    try:
        server.start()
        header(argv, server, systems, sizes, runs)
        jobs = plan(systems, measures, ENQUEUE_SYSTEMS)
        results, failures = run_all(jobs, runs, lambda job: run_job(job, server, workdir, sizes), label_of)
        if _CAPTURED_FROM:
            print(f"bare loop messages: {_CAPTURED_FROM[0]}, {len(_CAPTURED[0].body):,} body bytes each")
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every worker, deleting the vhost", file=sys.stderr, flush=True)
        return 130
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print_run_end(started, source_at_start)
    return report(results, failures, systems, sizes)


if __name__ == "__main__":
    bootstrap(__file__)
    sys.exit(main(sys.argv[1:]))
