"""Helpers shared by the benchmark scripts (``bench_sqlite.py``, ``bench_redis.py``).

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
  :func:`celeriac_source`: the machine header.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
