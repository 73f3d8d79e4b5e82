"""Helpers shared by the benchmark scripts (``bench_sqlite.py``, ``bench_redis.py``, ``bench_rabbitmq.py``).

Standard library only: the scripts import this module before they have re-executed
themselves inside ``benchmarks/.venv``.

* :func:`bootstrap`: create ``benchmarks/.venv`` (celeriac editable from this checkout,
  the pinned peers of ``benchmarks/requirements.txt``) and re-execute the script in it;
* :func:`workers`: worker processes, each in its own session (process group), always
  stopped on the way out (SIGTERM to the group, SIGKILL after :data:`STOP_TIMEOUT_S`);
* :func:`wait_for_size`: completions are counted by the size of a file the task bodies
  append to, never by a round trip to the broker;
* :class:`Figures`, :func:`percentile`, :func:`fmt`, :func:`raw`: the figures of the runs
  and their formatting; :func:`cpu_model`, :func:`ram`, :func:`mount_of`,
  :func:`celeriac_source`: the machine header;
* the harness of the networked-broker benchmarks (``bench_redis.py``, ``bench_rabbitmq.py``,
  and ``bench_memory.py``, which also runs celeriac on SQLite through it):
  a :class:`System` behind one interface, :func:`apps_on_path` to send through several apps
  directories in one process, :func:`measure_enqueue_single`, :func:`measure_drain`,
  :func:`measure_latency`, the interleaved :func:`run_all` and the tables (:func:`section`,
  :func:`latency_section`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import platform
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV = BENCH_DIR / ".venv"
REQUIREMENTS = BENCH_DIR / "requirements.txt"

STOP_TIMEOUT_S = 15.0


# -- bootstrap: run inside benchmarks/.venv -------------------------------------------------------


def in_bench_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def bootstrap(script: str | Path) -> None:
    """Create ``benchmarks/.venv`` if needed, install celeriac and the peers, re-exec ``script`` in it."""
    if in_bench_venv():
        return
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + (REPO / "pyproject.toml").read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    stamp = VENV / f".installed-{digest[:16]}"
    if not python.exists():
        print(f"creating {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp.exists():
        print(f"installing celeriac (editable) and {REQUIREMENTS.name} into {VENV} ...", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", str(REPO), "-r", str(REQUIREMENTS)], check=True)
        for old in VENV.glob(".installed-*"):
            old.unlink()
        stamp.touch()
    os.execv(str(python), [str(python), str(Path(script).resolve()), *sys.argv[1:]])


# -- results ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """Every value measured for one job (a system in one configuration), one list per metric."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, metric: str, value: float) -> None:
        self.values.setdefault(metric, []).append(value)

    def median(self, metric: str) -> float | None:
        runs = self.values.get(metric)
        return statistics.median(runs) if runs else None


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def raw(values: Sequence[float] | None) -> str:
    return " / ".join(fmt(v) for v in values) if values else "—"


def short(metrics: dict[str, float]) -> str:
    """``name=value, ...`` for the progress lines (``extra_runs`` left out)."""
    parts = []
    for name, value in metrics.items():
        if name == "extra_runs":
            continue
        parts.append(f"{name}={value:.1f}" if value < 1000 else f"{name}={value:,.0f}")
    return ", ".join(parts)


# -- processes -------------------------------------------------------------------------------------


def clean_environ() -> dict[str, str]:
    """This environment without celeriac/Celery settings (they would override the benchmark's)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CELERIAC_", "BENCH_"))
        and k not in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    }


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_groups(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process's group, wait; SIGKILL the groups where anything is left."""
    for proc in procs:  # started with start_new_session=True: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    for proc in procs:
        if proc.poll() is None or _group_alive(proc.pid):
            print(f"  worker group {proc.pid} did not stop on SIGTERM: SIGKILL", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    stop_groups([proc])


@contextlib.contextmanager
def workers(
    cmds: Sequence[list[str]], env: dict[str, str], cwd: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes, each in its own session (process group), all stopped on the way out.

    Their output goes to ``cwd/worker.log`` (see :func:`log_tail`)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (cwd / "worker.log").open("ab") as out:
            for cmd in cmds:
                procs.append(
                    subprocess.Popen(
                        cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        yield procs
    finally:
        stop_groups(procs)


@contextlib.contextmanager
def worker(cmd: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One worker in its own session (process group), always stopped on the way out."""
    with workers([cmd], env, cwd) as procs:
        yield procs[0]


def log_tail(cwd: Path, lines: int = 20) -> str:
    try:
        text = (cwd / "worker.log").read_text(errors="replace")
    except OSError:
        return "(no worker log)"
    return "\n".join(text.splitlines()[-lines:])


def file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def wait_for_size(
    path: Path,
    size: int,
    procs: subprocess.Popen[bytes] | Sequence[subprocess.Popen[bytes]],
    timeout: float,
    poll: float,
) -> float:
    """Wait until ``path`` holds ``size`` bytes; returns perf_counter() when seen.

    :class:`RuntimeError` if a worker process exits first or ``timeout`` seconds pass."""
    group = [procs] if isinstance(procs, subprocess.Popen) else list(procs)
    deadline = time.perf_counter() + timeout
    while True:
        now = time.perf_counter()
        if file_size(path) >= size:
            return now
        for proc in group:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with code {proc.returncode} before {path.name} reached {size}"
                )
        if now > deadline:
            raise RuntimeError(
                f"timed out after {timeout:.0f} s: {path.name} has {file_size(path)} of {size}"
            )
        time.sleep(poll)


# -- the machine -----------------------------------------------------------------------------------


def mount_of(path: Path) -> str:
    """Filesystem type, source and mount point holding ``path`` (from /proc/self/mountinfo)."""
    best = ("?", "?", "")
    target = str(path.resolve())
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                mount_point = left.split()[4]
                fstype, source = right.split()[:2]
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best[2]):
                    best = (fstype, source, mount_point)
    except OSError:
        pass
    return f"{best[0]} ({best[1]} on {best[2]})"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def ram() -> str:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def cores() -> str:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{os.cpu_count()} cores ({affinity} usable)"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout


def start_run(root: Path, prefix: str) -> Path:
    """Begin a benchmark run: drop CELERIAC_/BENCH_ variables this shell may carry, make Ctrl-C
    and SIGTERM unwind the same way (so every process and broker is cleaned up), and make a
    scratch directory under ``root``."""
    for name in [k for k in os.environ if k.startswith(("CELERIAC_", "BENCH_"))]:
        del os.environ[name]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def print_run_end(started: float, source_at_start: str) -> None:
    """Print the run's total time, and a warning if celeriac's source changed while it ran."""
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    source = celeriac_source()
    if source != source_at_start:
        print(f"WARNING: celeriac's source changed during the run: {source_at_start} -> {source}")
    print()


def celeriac_source() -> str:
    """The checkout's commit, and whether celeriac's source differs from it (read-only git calls)."""
    paths = ("src", "pyproject.toml")
    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        status = git("status", "--porcelain", "--", *paths)
        diff = git("diff", "HEAD", "--", *paths)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not status.strip():
        return commit
    digest = hashlib.sha256((status + diff).encode()).hexdigest()[:12]
    return f"{commit} + uncommitted changes in src/pyproject.toml (state {digest})"


# -- the harness of bench_redis.py and bench_rabbitmq.py -------------------------------------------

STARTUP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 900.0
LATENCY_TIMEOUT_S = 120.0
#: A record of the latency stamp file: (sent, body started), as the apps' ``_marks.py`` writes it.
RECORD = struct.Struct("<dd")
RECORD_SIZE = RECORD.size
MEASURES = ("enqueue", "drain", "latency")


class StartError(RuntimeError):
    """A system could not be set up, or its workers never ran a task: its other jobs are skipped."""


@dataclass(frozen=True, slots=True)
class Sizes:
    single: int = 5_000
    batch_size: int = 1_000
    drain: int = 20_000
    rate: int = 200
    seconds: float = 10.0
    warmup: int = 20

    @property
    def latency_tasks(self) -> int:
        return round(self.rate * self.seconds)


QUICK = Sizes(single=500, batch_size=1_000, drain=2_000, rate=200, seconds=3.0, warmup=10)


def venv_bin(name: str) -> str:
    """A console script of the running virtualenv."""
    return str(Path(sys.executable).parent / name)


def dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


@dataclass(slots=True)
class Run:
    """One job's scratch directory (completion files, worker log) and the broker's URL.

    The workers get the URL as ``$url_var`` and ``paths`` (the apps) on ``PYTHONPATH``."""

    dir: Path
    url: str
    url_var: str
    paths: tuple[Path, ...]

    @property
    def done(self) -> Path:
        return self.dir / "done.bin"

    @property
    def stamps(self) -> Path:
        return self.dir / "stamps.bin"

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = clean_environ()
        env.update(extra)
        env[self.url_var] = self.url
        env["BENCH_DONE_FILE"] = str(self.done)
        env["BENCH_STAMP_FILE"] = str(self.stamps)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*map(str, self.paths), env.get("PYTHONPATH")]))
        return env


#: worker processes of every system
WORKERS = 2


class System:
    """What a measurement needs from a system: send tasks, start its workers."""

    #: how the system sends a batch, for the table
    batch_note = ""

    def __init__(self, key: str, label: str) -> None:
        self.key = key
        self.label = label

    def open(self, url: str) -> None:
        """Connect the producer (outside the timed part)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def send_one(self) -> None:
        raise NotImplementedError

    def send_latency(self, sent: float) -> None:
        raise NotImplementedError

    def send_many(self, total: int, batch: int) -> None:
        raise NotImplementedError

    def wait_enqueued(self, total: int) -> None:
        """Return once the ``total`` tasks sent since :meth:`open` are in the broker (timed).

        Nothing to wait for where every send returns only once the broker has the message
        (Redis); a broker taking unconfirmed publishes (RabbitMQ) waits for the queue to hold
        them, so that every system's enqueue figure ends at the same point."""

    def worker_cmds(self, url: str) -> list[list[str]]:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {}


class CeleriacSystem(System):
    """celeriac's producer and workers, the same on every broker (the app module of the
    benchmark's apps directory builds the app from the environment).

    ``loglevel`` is the worker's ``-l``; ``worker_args`` go at the end of its command line."""

    batch_note = "apply_many([()] * 1000)"

    def __init__(
        self,
        key: str,
        label: str,
        queue: str = "celery",
        acks_late: bool = False,
        prefetch: str | None = None,
        loglevel: str = "warning",
        worker_args: Sequence[str] = (),
    ) -> None:
        super().__init__(key, label)
        self.queue, self.acks_late, self.prefetch = queue, acks_late, prefetch
        self.loglevel, self.worker_args = loglevel, tuple(worker_args)
        self.app: Any = None
        self.noop: Any = None
        self.latency: Any = None

    def open(self, url: str) -> None:
        from celeriac_app import make_app

        self.app, self.noop, self.latency = make_app(url, self.queue, self.acks_late)
        # connection opened and the queue declared outside the timed part
        self.app.broker.declare_queue(self.app.router.queue(self.queue))
        self.app.broker.queue_length(self.queue)

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
        self.app = None

    def send_one(self) -> None:
        self.noop.delay()

    def send_latency(self, sent: float) -> None:
        self.latency.delay(sent)

    def send_many(self, total: int, batch: int) -> None:
        calls = [()] * batch
        for _ in range(total // batch):
            self.noop.apply_many(calls)

    def worker_cmds(self, url: str) -> list[list[str]]:
        cmd = [sys.executable, "-m", "celeriac", "worker", "-A", "celeriac_app:app", "-c", str(WORKERS)]
        cmd += ["-Q", self.queue, "-l", self.loglevel]
        if self.prefetch is not None:
            cmd += ["--prefetch-multiplier", self.prefetch]
        return [[*cmd, *self.worker_args]]

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_QUEUE": self.queue, "BENCH_ACKS_LATE": "1" if self.acks_late else "0"}


@contextlib.contextmanager
def apps_on_path(paths: Sequence[Path]) -> Iterator[None]:
    """Import app modules from ``paths`` (a benchmark's apps directories) inside the block.

    The apps directories use the same module names (``celeriac_app``, ``_marks``), so a script
    that sends through more than one of them forgets every module loaded from an apps directory
    on the way in and on the way out."""

    def forget() -> None:
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None)
            folder = Path(origin).resolve().parent if origin else None
            if folder is not None and folder.parent == BENCH_DIR and folder.name.endswith("_apps"):
                del sys.modules[name]

    entries = [str(path) for path in paths]
    forget()
    sys.path[:0] = entries
    try:
        yield
    finally:
        for entry in entries:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)
        forget()


@contextlib.contextmanager
def producer(system: System, run: Run) -> Iterator[System]:
    try:
        system.open(run.url)
    except Exception as exc:
        with contextlib.suppress(Exception):
            system.close()
        raise StartError(f"{system.label}: the producer could not be set up: {exc!r}") from exc
    try:
        yield system
    finally:
        system.close()


def machine_lines(broker: str, peers: Sequence[str], peer_note: str = "") -> list[str]:
    """The machine, Python, broker, celeriac and peer versions every benchmark prints first."""
    versions = ", ".join(f"{name} {dist_version(name)}" for name in peers)
    return [
        f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"CPU: {cpu_model()}, {cores()}",
        f"RAM: {ram()}",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {platform.python_version()} ({sys.executable})",
        broker,
        f"celeriac {dist_version('celeriac')} at {celeriac_source()}",
        f"peers: {versions}{peer_note}",
    ]


def wait_started(
    system: System, run: Run, procs: list[subprocess.Popen[bytes]], path: Path, size: int
) -> float:
    """Wait for the first completion; a worker that never gets there is a :class:`StartError`."""
    try:
        return wait_for_size(path, size, procs, STARTUP_TIMEOUT_S, 0.001)
    except RuntimeError as exc:
        raise StartError(
            f"{system.label}: the workers did not start ({exc})\n--- worker log ---\n{log_tail(run.dir)}"
        ) from None


def measure_enqueue_single(system: System, run: Run, sizes: Sizes) -> dict[str, float]:
    """``sizes.single`` single sends, no worker running: tasks/s."""
    with producer(system, run):
        started = time.perf_counter()
        for _ in range(sizes.single):
            system.send_one()
        system.wait_enqueued(sizes.single)
        elapsed = time.perf_counter() - started
    return {"enqueue_single": sizes.single / elapsed}


def measure_drain(system: System, run: Run, sizes: Sizes) -> dict[str, float]:
    """Queue ``sizes.drain`` tasks (timed: the batch enqueue figure), then start the workers and
    time them until every task body has run."""
    with producer(system, run):
        started = time.perf_counter()
        system.send_many(sizes.drain, sizes.batch_size)
        system.wait_enqueued(sizes.drain)
        enqueue_s = time.perf_counter() - started
    env = run.env(system.worker_env())
    with workers(system.worker_cmds(run.url), env, run.dir) as procs:
        spawned = time.perf_counter()
        first = wait_started(system, run, procs, run.done, 1)
        try:
            last = wait_for_size(run.done, sizes.drain, procs, DRAIN_TIMEOUT_S, 0.002)
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


def pace(system: System, count: int, rate: float) -> float:
    """Send ``count`` latency tasks at ``rate`` per second on a monotonic schedule; the rate achieved."""
    started = time.monotonic()
    for index in range(count):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        system.send_latency(time.time())
    return count / (time.monotonic() - started)


def measure_latency(system: System, run: Run, sizes: Sizes) -> dict[str, float]:
    """Idle workers; ``sizes.rate`` tasks/s for ``sizes.seconds``; send -> task body start, in ms."""
    env = run.env(system.worker_env())
    with producer(system, run), workers(system.worker_cmds(run.url), env, run.dir) as procs:
        system.send_latency(time.time())
        wait_started(system, run, procs, run.stamps, RECORD_SIZE)
        time.sleep(1.0)  # every worker process up, not only the first
        pace(system, sizes.warmup, 50.0)
        skip = (1 + sizes.warmup) * RECORD_SIZE
        try:
            wait_for_size(run.stamps, skip, procs, LATENCY_TIMEOUT_S, 0.005)
            time.sleep(0.5)  # idle again
            count = sizes.latency_tasks
            rate = pace(system, count, sizes.rate)
            wait_for_size(run.stamps, skip + count * RECORD_SIZE, procs, LATENCY_TIMEOUT_S, 0.01)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- worker log ---\n{log_tail(run.dir)}") from None
    data = run.stamps.read_bytes()[skip : skip + count * RECORD_SIZE]
    samples = [(body_started - sent) * 1000 for sent, body_started in RECORD.iter_unpack(data)]
    return {
        "latency_p50": percentile(samples, 50),
        "latency_p95": percentile(samples, 95),
        "latency_p99": percentile(samples, 99),
        "latency_max": max(samples),
        "sent_per_s": rate,
    }


def measure(system: System, run: Run, measure_name: str, sizes: Sizes) -> dict[str, float]:
    """One job's measurement: ``enqueue``, ``drain`` or ``latency``."""
    if measure_name == "enqueue":
        return measure_enqueue_single(system, run, sizes)
    if measure_name == "drain":
        return measure_drain(system, run, sizes)
    return measure_latency(system, run, sizes)


# -- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    system: str  # a key of the script's SYSTEMS
    measure: str  # one of MEASURES

    @property
    def key(self) -> str:
        return f"{self.system}.{self.measure}"


def plan(systems: Sequence[str], measures: Sequence[str], enqueue_systems: Sequence[str]) -> list[Job]:
    """Every selected measurement of every selected system; each run goes through this list in order,
    so the systems interleave. Only ``enqueue_systems`` (whose producers differ) get ``enqueue``."""
    jobs = []
    for measure_name in MEASURES:
        if measure_name not in measures:
            continue
        for key in systems:
            if measure_name == "enqueue" and key not in enqueue_systems:
                continue
            jobs.append(Job(key, measure_name))
    return jobs


def run_all(
    jobs: Sequence[Job], runs: int, run_job: Callable[[Job], dict[str, float]], label_of: Callable[[str], str]
) -> tuple[dict[str, Figures], list[str]]:
    """Every job once per run, in order; failures are listed, and a system that cannot start is
    not tried again."""
    results: dict[str, Figures] = {}
    failures: list[str] = []
    broken: dict[str, str] = {}
    for index in range(1, runs + 1):
        for job in jobs:
            tag = f"[run {index}/{runs}] {job.key}"
            if job.system in broken:
                print(f"{tag}: skipped ({broken[job.system]} failed to start earlier)", flush=True)
                continue
            try:
                metrics = run_job(job)
            except StartError as exc:
                broken[job.system] = label_of(job.system)
                failures.append(f"{tag}: {exc}")
                print(f"{tag}: FAILED TO START: {exc}", flush=True)
                continue
            except Exception as exc:  # report it, go on with the other jobs
                failures.append(f"{tag} ({label_of(job.system)}): {exc}")
                print(f"{tag}: FAILED: {exc}", flush=True)
                continue
            figures = results.setdefault(job.key, Figures())
            for name, value in metrics.items():
                figures.add(name, value)
            print(f"{tag}: {short(metrics)}", flush=True)
    return results, failures


def select(names: str, what: str, keys: Sequence[str]) -> set[str]:
    """The keys named by ``names``: comma-separated keys or families (the part before ``-``)."""
    chosen: set[str] = set()
    for name in filter(None, (n.strip() for n in names.split(","))):
        matched = {key for key in keys if name in (key, family(key))}
        if not matched:
            raise SystemExit(f"{what}: unknown system {name!r}; known: {', '.join(keys)}")
        chosen |= matched
    return chosen


def family(key: str) -> str:
    return key.split("-", 1)[0]


def arg_parser(description: str, keys: Sequence[str], workdir: Path) -> argparse.ArgumentParser:
    """The options every networked-broker benchmark takes; a script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median reported); default 3")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 500 single, 2,000 batch/drain, 3 s latency"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated systems or families to run (default all): {', '.join(keys)}",
    )
    parser.add_argument("--skip", default="", help="comma-separated systems or families to leave out")
    parser.add_argument(
        "--measure", default=",".join(MEASURES), help=f"comma-separated subset of {', '.join(MEASURES)}"
    )
    parser.add_argument("--workdir", type=Path, default=workdir, help="parent of the scratch directories")
    return parser


def choose(args: argparse.Namespace, keys: Sequence[str]) -> tuple[Sizes, int, list[str], list[str]]:
    """The sizes, runs, systems (in table order) and measures the options select."""
    sizes = QUICK if args.quick else Sizes()
    only = select(args.only, "--only", keys) or set(keys)
    systems = [key for key in keys if key in only - select(args.skip, "--skip", keys)]
    measures = [m.strip() for m in args.measure.split(",") if m.strip()]
    unknown = sorted(set(measures) - set(MEASURES))
    if unknown or not systems:
        raise SystemExit(f"nothing to run: unknown --measure {unknown}" if unknown else "no system selected")
    return sizes, max(1, args.runs), systems, measures


# -- the tables ------------------------------------------------------------------------------------


def ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}" if value is not None and reference else "—"


def section(
    results: dict[str, Figures],
    systems: Sequence[str],
    measure_name: str,
    metric: str,
    notes: Mapping[str, str],
    label_of: Callable[[str], str],
    reference: str,
) -> list[str]:
    """One table: a row per system, the median of ``metric``, its ratio to ``reference``, the runs."""
    ref = results.get(f"{reference}.{measure_name}", Figures()).median(metric)
    lines = [
        f"| system | median | ratio / {reference} | runs | note |",
        "|---|---|---|---|---|",
    ]
    for key in systems:
        figures = results.get(f"{key}.{measure_name}")
        if figures is None or figures.median(metric) is None:
            continue
        median = figures.median(metric)
        cells = (label_of(key), fmt(median), ratio(median, ref), raw(figures.values[metric]))
        lines.append("| " + " | ".join(cells) + f" | {notes.get(key, '')} |")
    return lines if len(lines) > 2 else []


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table of ``rows`` under ``header`` (no lines when there are no rows)."""
    if not rows:
        return []
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def latency_section(
    results: dict[str, Figures],
    systems: Sequence[str],
    label_of: Callable[[str], str],
    reference: str,
    note_of: Callable[[str], str],
) -> list[str]:
    metrics = ("latency_p50", "latency_p95", "latency_p99")
    ref = results.get(f"{reference}.latency", Figures())
    lines = [
        f"| system | p50 | p95 | p99 | p99 ratio / {reference} | p50 runs | p95 runs | p99 runs "
        "| max | sent/s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in systems:
        figures = results.get(f"{key}.latency")
        if figures is None or figures.median("latency_p50") is None:
            continue
        cells = [label_of(key), *(fmt(figures.median(m)) for m in metrics)]
        cells.append(ratio(figures.median("latency_p99"), ref.median("latency_p99")))
        cells += [raw(figures.values[m]) for m in metrics]
        cells += [fmt(figures.median("latency_max")), fmt(figures.median("sent_per_s"))]
        cells.append(note_of(key))
        lines.append("| " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def saturation_note(results: dict[str, Figures], key: str, rate: int) -> str:
    """Say so when ``key`` drains slower than the latency test sends: its figures are queueing."""
    drain = results.get(f"{key}.drain", Figures()).median("drain")
    if drain is not None and drain < rate:
        return f"saturated: drains {drain:,.0f}/s < {rate}/s sent, so the queue grows"
    return ""


def extra_runs_warning(results: dict[str, Figures]) -> str:
    extra = {
        key: fig.values["extra_runs"] for key, fig in results.items() if any(fig.values.get("extra_runs", []))
    }
    return f"\nWARNING: task bodies ran more often than tasks were sent: {extra}" if extra else ""


def print_failures(failures: Sequence[str]) -> int:
    """List the failed jobs; the exit status (1 if any failed)."""
    if not failures:
        return 0
    print(f"\n{len(failures)} job(s) FAILED (their figures are missing from the medians):")
    for failure in failures:
        print("  " + failure.splitlines()[0])
    return 1
