"""The child loop: fetch within the prefetch window → execute → batch ack.

A child runs in a process forked by the master. It fetches up to its prefetch
window in one broker call, runs the messages one by one, and settles them in
batches: buffered results are written, then the late acks, in one broker call
each. It settles after the window is done, and before the next task when the
oldest unsettled task finished more than :data:`SETTLE_AFTER_S` ago or the last
task took longer than :data:`SLOW_TASK_S`, so results of slow tasks show up at
once while fast tasks share a write.

Under early ack a task's message is settled before the task runs, so until its
buffered result is written the task is listed in the ledger of the child's slot
(:mod:`celeriac.worker.slots`): a child killed in between leaves the master the
tasks whose results it lost, and the master records them instead of leaving them
PENDING. The results are written early if the ledger fills up.

It stops its loop, hands unstarted messages back and exits cleanly when:

* the master asks it to (SIGTERM: warm shutdown, the running task finishes);
* it has run ``worker_max_tasks_per_child`` tasks;
* after a task, its own memory (USS) is over ``worker_max_memory_per_child``;
* its master died (nobody would renew its leases or replace it).

The reason travels to the master over the event pipe (:mod:`celeriac.worker.pipe`).

Handing back at once
--------------------
On SIGTERM the prefetched messages go back to their queues when the stop begins,
not after the running task, so another worker can start them now. The handler
only writes a byte to a pipe (a handler must not call the broker: it may have
interrupted a broker call on the same connection); the child's hand-back thread,
waiting on that pipe since the child started, takes the held deliveries and
hands them back (``Broker.hand_back``: they never ran, so this is no delivery and
counts nothing towards ``task_delivery_limit``) while the main thread goes on with
the task. ``_held`` is guarded by a lock: the loop takes the next delivery under it and
never once the stop has begun, and the hand-back takes only what is still held,
so a delivery is either run or handed back, never both. Brokers take the hand-back
from the second thread as they take a publish from task code: SQLite serialises
a process's threads on its transaction lock, redis-py gives each thread its own
pooled connection, and on RabbitMQ a consumer's channel is used under that
consumer's lock (py-amqp channels are not thread-safe) while the copies handed
back are published on a pooled channel of their own.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from celeriac.brokers.base import Delivery
from celeriac.errors import BrokerError, SoftTimeLimitExceeded
from celeriac.observe.records import ExitReason
from celeriac.worker.execute import ACK, REQUEUE, Executor, NotStarted
from celeriac.worker.memory import MemoryProbe, TaskTally
from celeriac.worker.pipe import Exit, Message, Ready, Report, encode
from celeriac.worker.prefetch import PrefetchWindow
from celeriac.worker.runstats import RunCounts

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.worker.options import WorkerOptions
    from celeriac.worker.slots import Slot

logger = logging.getLogger("celeriac.worker")

#: How long one idle fetch waits before the loop looks at its stop flag again.
FETCH_TIMEOUT_S = 0.25
SETTLE_AFTER_S = 0.005
SLOW_TASK_S = 0.001
#: How often a child sends its run counts and memory tally to the master (and when it exits).
REPORT_S = 1.0


def consumer_id(nodename: str, pid: int) -> str:
    """The lease owner name of a child: node and pid."""
    return f"{nodename}/{pid}"


class Child:
    """One child process's loop."""

    def __init__(
        self,
        app: Celeriac,
        options: WorkerOptions,
        index: int,
        slot: Slot,
        event_fd: int,
        signal_mask: Iterable[int] | None = None,
    ) -> None:
        self.app = app
        self.options = options
        self.index = index
        self.slot = slot
        self.event_fd = event_fd
        self.pid = os.getpid()
        self.master_pid = os.getppid()
        self.consumer = consumer_id(options.nodename, self.pid)
        self.broker = app.broker
        self.hooks = app.hooks
        self.executor = Executor(app, self.broker, self.hooks, options.nodename, slot)
        self.window = PrefetchWindow(options.prefetch_multiplier)
        self.memory = MemoryProbe()
        self.tally = TaskTally()
        self.runs = RunCounts()
        #: RSS and peak RSS after the last task, which serve as the next task's "before" unless
        #: the child fetched or settled in between (None: read them afresh)
        self._rss: int | None = None
        self._peak = 0
        self._next_report = time.monotonic() + REPORT_S
        self.stopping = False
        self._signal_mask = signal_mask
        self._held: deque[Delivery] = deque()
        #: guards ``_held`` between the loop and the hand-back thread
        self._held_lock = threading.Lock()
        #: the SIGTERM handler writes here to wake the hand-back thread
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_w, False)
        self._acks: list[Delivery] = []
        self._unsettled = 0
        self._oldest = 0.0
        #: the name of the last task run (for the exit and recycle reasons)
        self._last_name: str | None = None

    # -- signals ----------------------------------------------------------------------------

    def on_sigterm(self, signum: int, frame: Any) -> None:
        """Warm stop: hand back the prefetched messages now, finish the running task, exit."""
        self.stopping = True
        self._wake_hand_back()

    def _wake_hand_back(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: already woken
            os.write(self._stop_w, b"x")

    def on_soft_limit(self, signum: int, frame: Any) -> None:
        """The master says the running task passed its soft time limit."""
        if self.executor.in_body and self.slot.soft_sent() == self.slot.seq:
            raise SoftTimeLimitExceeded("soft time limit exceeded")

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, self.on_sigterm)
        signal.signal(signal.SIGUSR1, self.on_soft_limit)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if self._signal_mask is not None:  # the master blocked them across fork(); deliver any now
            signal.pthread_sigmask(signal.SIG_SETMASK, self._signal_mask)

    def _orphaned(self) -> bool:
        """Whether the master died: nobody would renew this child's leases or replace it."""
        return os.getppid() != self.master_pid

    def _name_process(self) -> None:
        """Name the process in log lines (``%(processName)s``)."""
        multiprocessing.current_process().name = f"Child-{self.index}"

    def _send(self, message: Message) -> None:
        with contextlib.suppress(OSError):  # the master is gone: nothing to tell
            os.write(self.event_fd, encode(message))

    # -- loop -------------------------------------------------------------------------------

    def _settle(self, ack: bool = True) -> list[Delivery]:
        """Make finished tasks' results durable, then ack them (or return the acks to send)."""
        acks = self._acks
        if self._unsettled:
            # a result backend out of reach raises here: nothing is acked, all is kept
            self._write_results()
            self._unsettled = 0
        self._acks = []
        if ack and acks:
            try:
                self.broker.ack(acks)
            except BrokerError:
                self._acks = acks + self._acks  # try again with the next settle
                raise
            return []
        return acks

    def _write_results(self) -> None:
        """Write the buffered results (the hooks do), then empty the slot's ledger of them."""
        self._rss = None  # what settling allocates or frees is no task's doing either
        self.hooks.before_settle()
        self.slot.written()

    def _fetch(self) -> None:
        """Settle the window just run and lease the next one in the same broker round trip."""
        acks = self._settle(ack=False)
        started = time.perf_counter()
        try:
            got = self.broker.fetch(
                self.options.queue_names, self.window.size, FETCH_TIMEOUT_S, self.consumer, ack=acks
            )
        except BrokerError:
            self._acks = acks + self._acks  # not acked: keep them for the next round trip
            raise
        dead = self.broker.fetched_dead_letters()
        if dead:
            self.executor.report_dead_letters(dead)
        if got:
            self._rss = None  # what fetching allocated is not the next task's doing
            self._held.extend(got)
            self._fetch_s = time.perf_counter() - started
            self._batch = (len(got), time.perf_counter())

    def _recycle_reason(self) -> tuple[ExitReason, str] | None:
        limit = self.options.max_tasks_per_child
        if limit is not None and self.slot.done >= limit:
            return ExitReason.MAX_TASKS, f"ran {self.slot.done} tasks (worker_max_tasks_per_child={limit})"
        memory_limit = self.options.max_memory_per_child
        if memory_limit is not None:
            uss = self.memory.over(memory_limit)
            if uss is not None:
                return ExitReason.MAX_MEMORY, (
                    f"own memory (USS) {uss} KiB > worker_max_memory_per_child={memory_limit} KiB "
                    f"after {self.slot.done} tasks, the last one {self._last_name}"
                )
        return None

    def _run_one(self, delivery: Delivery) -> float:
        memory, tally = self.memory, self.tally
        headers = delivery.envelope.headers
        header = headers.get("task") if isinstance(headers, dict) else None
        measure = tally.measure(header)
        rss_before = peak_before = 0
        if measure:
            if self._rss is None:
                self._rss, self._peak = memory.rss_kib(), memory.peak_kib()
            rss_before, peak_before = self._rss, self._peak
        started = time.perf_counter()
        executed = self.executor.execute(delivery)
        runtime = time.perf_counter() - started
        name = executed.name
        if name is not None:
            self._last_name = name
            self.runs.add(delivery.queue, name, executed.state, runtime)
        if measure:
            # one reading is this task's "after" and, unless the child settles or fetches
            # first, the next task's "before"
            self._rss, self._peak = memory.rss_kib(), memory.peak_kib()
            if name is not None:
                tally.add(name, runtime, self._rss - rss_before, self._peak - peak_before)
        else:
            self._rss = None
            if name is not None:
                tally.add(name, runtime)
        action = executed.settlement.action
        if action == ACK:
            self._acks.append(delivery)
        elif action == REQUEUE:  # Reject(requeue=True): delivered again, as a redelivery
            self.broker.reject([delivery], requeue=True)
        if not self._unsettled:
            self._oldest = time.monotonic()
        self._unsettled += 1
        return runtime

    def _batch_done(self) -> None:
        tasks, started = self._batch
        self.window.observe(self._fetch_s, tasks, time.perf_counter() - started)

    def loop(self) -> tuple[ExitReason, str]:
        """Serve until told to stop or recycled; return why."""
        last_runtime = 0.0
        self._batch = (0, 0.0)
        self._fetch_s = 0.0
        while not self.stopping:
            if self._orphaned():
                return ExitReason.ORPHANED, "the master process died; stopping so no task runs unsupervised"
            if time.monotonic() >= self._next_report:
                self._report()
            if not self._held:
                self._batch_done()
                self._fetch()
                continue
            if self._unsettled and (
                last_runtime >= SLOW_TASK_S or time.monotonic() - self._oldest >= SETTLE_AFTER_S
            ):
                self._settle()
            elif self.slot.ledger_full:  # a long window of quick tasks: their acks can wait
                self._write_results()
            with self._held_lock:
                delivery = self._held.popleft() if self._held and not self.stopping else None
            if delivery is None:
                continue  # stopping: what is held goes back, nothing more starts
            try:
                last_runtime = self._run_one(delivery)
            except NotStarted:
                with self._held_lock:
                    self._held.appendleft(delivery)  # run it once the broker is back
                raise
            reason = self._recycle_reason()
            if reason is not None:
                return reason
        return ExitReason.SHUTDOWN, "warm shutdown"

    def _report(self) -> None:
        self._next_report = time.monotonic() + REPORT_S
        # sent also when nothing ran: the count is current as of now, so a rate can fall to zero
        self._send(Report(self.tally.flush(), self.runs.flush(), self.window.size, time.time()))

    def _hand_back(self) -> None:
        """Give every held, unstarted delivery back to its queue."""
        with self._held_lock:
            held = list(self._held)
            self._held.clear()
        if held:
            self.broker.hand_back(held)
            logger.info("handed %d prefetched message(s) back to the queue", len(held))

    def _hand_back_on_stop(self) -> None:
        """The hand-back thread: wait until the stop begins, then hand back at once."""
        with contextlib.suppress(OSError):
            os.read(self._stop_r, 1)
        try:
            self._hand_back()
        except BrokerError as exc:
            logger.error(
                "child %d could not hand back messages: %s (their leases will expire)", self.index, exc
            )

    def _serve(self) -> tuple[ExitReason, str]:
        pause = 0.1
        while True:
            try:
                return self.loop()
            except BrokerError as exc:
                logger.error("broker error in child %d, retrying in %.1f s: %s", self.index, pause, exc)
                self._drop_lost()
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _drop_lost(self) -> None:
        """Forget held deliveries the broker put back itself (a lost connection)."""
        with self._held_lock:
            held = self.broker.still_held(self._held)
            if len(held) < len(self._held):
                logger.warning(
                    "child %d dropped %d prefetched message(s): the broker put them back in their queue",
                    self.index,
                    len(self._held) - len(held),
                )
                self._held.clear()
                self._held.extend(held)

    def main(self) -> int:
        """Entry point after fork. Returns the process exit code."""
        self._install_signals()
        self._name_process()
        started = time.monotonic()
        self.hooks.after_child_start(self.index)
        hand_back = threading.Thread(target=self._hand_back_on_stop, name="hand-back", daemon=True)
        hand_back.start()
        self._send(Ready(self.pid, time.monotonic() - started))
        try:
            reason, detail = self._serve()
        finally:
            self._wake_hand_back()
            hand_back.join()
            try:
                self._hand_back()  # anything a fetch brought in after the stop began
                self._settle()
            except BrokerError as exc:
                logger.error(
                    "child %d could not hand back messages: %s (their leases will expire)", self.index, exc
                )
        self.hooks.before_child_exit(self.index)
        self._send(
            Exit(
                reason,
                detail,
                self._last_name,
                self.tally.busy_s,
                self.tally.flush(),
                self.runs.flush(),
                time.time(),
            )
        )
        return 0


def run_child(
    app: Celeriac,
    options: WorkerOptions,
    index: int,
    slot: Slot,
    event_fd: int,
    signal_mask: Iterable[int] | None = None,
) -> None:
    """Run a child to completion and leave the process (never returns)."""
    code = 1
    try:
        code = Child(app, options, index, slot, event_fd, signal_mask).main()
    except BaseException:
        logger.exception("child %d crashed", index)
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
