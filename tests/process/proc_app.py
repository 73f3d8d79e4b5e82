"""The app the process tests run in real worker processes.

Configured from the environment (``CELERIAC_BROKER_URL``, ``CELERIAC_TASK_ACKS_LATE``,
...). Every task appends ``label pid time`` to ``$PROC_RUNS`` (one ``O_APPEND``
write, atomic between processes), so a test can count exactly how often each
task ran and in which child.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from celeriac import Celeriac, Queue, Reject, SoftTimeLimitExceeded
from celeriac.context import Request
from celeriac.hooks import ADMIT, Admission, Hooks

app = Celeriac("proc_app")
app.conf.update(
    task_queues=(Queue("celery"), Queue("transient", durable=False), Queue("other")),
    # quick heartbeats keep the tests short; the rate tests use the default (PROC_STATS_INTERVAL=2)
    worker_stats_interval=float(os.environ.get("PROC_STATS_INTERVAL", "0.2")),
)

_HELD: list[bytearray] = []
_LEAKED: list[bytearray] = []


def record(label: str) -> None:
    fd = os.open(os.environ["PROC_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{label} {os.getpid()} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


@app.task(name="run")
def run(label: str, seconds: float = 0.0) -> int:
    """Record the run, optionally take some time, return the child's pid."""
    record(label)
    if seconds:
        time.sleep(seconds)
    return os.getpid()


@app.task(name="block", bind=True)
def block(self, label: str, seconds: float = 60.0) -> str:
    """Record the run; the first delivery blocks (a test kills it), a redelivery returns."""
    record(label)
    if self.request.delivery_info.get("redelivered"):
        return "second delivery"
    time.sleep(seconds)
    return "slept"


@app.task(name="hold")
def hold(label: str, release: str, seconds: float = 10.0) -> str:
    """Record the run, then run until the file ``release`` exists or ``seconds`` pass."""
    record(label)
    deadline = time.monotonic() + seconds
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            return "ran out"
        time.sleep(0.01)
    return "released"


@app.task(name="progress", bind=True)
def progress(self, label: str, total: int, release: str, seconds: float = 10.0) -> int:
    """Report ``PROGRESS`` with Celery's recipe meta at each of ``total`` steps; after the first,
    run on only once the file ``release`` exists (the test creates it when it has seen that step)."""
    record(label)
    for step in range(total):
        self.update_state(state="PROGRESS", meta={"current": step, "total": total})
        deadline = time.monotonic() + seconds
        while step == 0 and not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    return total


@app.task(name="hog")
def hog(label: str, mib: int) -> int:
    """Keep ``mib`` MiB alive in this child (a leak), touching every page."""
    _HELD.append(bytearray(b"\x01") * (mib * 1024 * 1024))
    record(label)
    return os.getpid()


@app.task(name="soft", soft_time_limit=0.3)
def soft(label: str) -> str:
    record(label)
    try:
        time.sleep(30)
    except SoftTimeLimitExceeded:
        return "stopped at the soft limit"
    return "not interrupted"


@app.task(name="crash", acks_late=True)
def crash(label: str) -> None:
    """Kill the child running it, every time (a poison message)."""
    record(label)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="die_before_start")
def die_before_start(label: str) -> None:
    """Never runs: :class:`KillChild` kills the child admitting it (a poison message
    that kills its child before the task starts, as one that crashes the decoder would)."""


@app.task(name="die_after_return")
def die_after_return(label: str) -> str:
    """Record the run and return; :class:`KillChild` kills the child just after, while the
    result waits for the child's next batch of writes."""
    record(label)
    return label


@app.task(name="fail")
def fail(label: str) -> None:
    """Record the run and raise."""
    record(label)
    raise ValueError(label)


@app.task(name="started_at")
def started_at(label: str) -> float:
    record(label)
    return time.time()


@app.task(name="leak")
def leak(label: str, kib: int = 1024) -> int:
    """Keep ``kib`` KiB more on every run: a module-level list that only grows (a leak)."""
    _LEAKED.append(bytearray(b"\x01") * (kib * 1024))
    record(label)
    return os.getpid()


@app.task(name="spike")
def spike(label: str, mib: int = 64) -> int:
    """Use ``mib`` MiB for the length of the run and free it (a high-water mark, not a leak)."""
    temporary = bytearray(b"\x01") * (mib * 1024 * 1024)
    record(label)
    return len(temporary) // (1024 * 1024)


@app.task(name="balloon")
def balloon(label: str, mib: int, seconds: float) -> int:
    """Hold ``mib`` MiB, then keep running for ``seconds``."""
    record(label)
    held = bytearray(b"\x01") * (mib * 1024 * 1024)
    time.sleep(seconds)
    return len(held)


@app.task(name="requeue_once", bind=True, acks_late=True)
def requeue_once(self, label: str) -> None:
    """Celery's documented pattern: requeue, and reject for good once redelivered."""
    record(label)
    if self.request.delivery_info.get("redelivered"):
        raise Reject("no reason", requeue=False)
    raise Reject("no reason", requeue=True)


@app.task(name="requeue_always", acks_late=True)
def requeue_always(label: str) -> None:
    """Record the run and ask to run again later, every time."""
    record(label)
    raise Reject("not yet", requeue=True)


@app.task(name="noop", ignore_result=True)
def noop() -> None:
    """Nothing at all."""


class SlowStart(Hooks):
    """With ``PROC_SLOW_IMPORT_S`` set, each new child imports a module that takes that long."""

    def after_child_start(self, index: int) -> None:
        if os.environ.get("PROC_SLOW_IMPORT_S"):
            import slow_import  # noqa: F401


class _KillAtSuccessLine(logging.Filter):
    """The worker logs a task's success after the task ended and before its result is written
    (results are written in batches): for ``die_after_return``, the child dies there."""

    def filter(self, record: logging.LogRecord) -> bool:
        line = record.getMessage()
        if line.startswith("Task die_after_return[") and " succeeded in " in line:
            os.kill(os.getpid(), signal.SIGKILL)
        return True


class KillChild(Hooks):
    """Kills the child admitting a ``die_before_start`` task, before its task starts, and the
    child that ran a ``die_after_return`` task, after it ended."""

    def after_child_start(self, index: int) -> None:
        logging.getLogger("celeriac.worker").addFilter(_KillAtSuccessLine())

    def admit(self, request: Request) -> Admission:
        if request.task == "die_before_start":
            record(request.args[0])
            os.kill(os.getpid(), signal.SIGKILL)
        return ADMIT


app.add_hooks(SlowStart())
app.add_hooks(KillChild())


@app.task(name="add")
def add(x: int, y: int) -> int:
    """Record ``add:x:y`` and return the sum (the steps of the canvas tests)."""
    record(f"add:{x}:{y}")
    return x + y


@app.task(name="double", acks_late=True)
def double(x: int) -> int:
    """A chord member acked after its result is stored (no record: 1,000 of them run)."""
    return 2 * x


@app.task(name="total")
def total(values: list[int]) -> int:
    """A chord body: record ``total:<sum>`` and return the sum."""
    record(f"total:{sum(values)}")
    return sum(values)


@app.task(name="errback")
def errback(task_id: str) -> None:
    """Celery's old errback form: called with the failed task's id."""
    record(f"errback:{task_id}")


@app.task(name="errback_here")
def errback_here(request: Request, exc: BaseException, traceback: str) -> None:
    """Celery's new errback form, called in the worker that ran the failed task."""
    record(f"errback-here:{request.id}:{type(exc).__name__}")
