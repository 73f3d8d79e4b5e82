"""``-P solo``: the node's one process fetches and runs its tasks itself, one at a time.

For debugging (a breakpoint in a task stops the worker right there, and there is one
process to attach a debugger or profiler to) and for the smallest deployments. This is
Celery's ``solo`` pool.

The task runs in the main thread, so signals reach it. What the master does while a
task runs carries on in a supervisor thread: renewing leases (a task longer than the
lease must not run twice), publishing the heartbeat, the broker's housekeeping, reading
the loop's run counts, and watching the time limits. The loop itself is the child's
(:class:`~celeriac.worker.child.Child`), run in place:

* SIGTERM, SIGINT: warm shutdown. The running task finishes; prefetched messages go
  back to their queues at once.
* A second SIGTERM or SIGINT, or SIGQUIT: cold shutdown. The running task is
  interrupted and settled as the master settles the task of a killed child: under
  early ack it is marked failed (WorkerLostError); with ``acks_late`` it is delivered
  again.
* Soft time limit: SoftTimeLimitExceeded is raised in the task, as with prefork.
* Hard time limit: prefork kills the child, but here the child is the node, so
  TimeLimitExceeded is raised in the task instead. A task stuck in C code that never
  returns to Python goes on running.

A solo node has no children. ``worker_concurrency`` and the recycling limits
(``worker_max_tasks_per_child``, ``worker_max_memory_per_child[_hard]``) do not apply:
:data:`~celeriac.worker.options.SOLO_UNUSED`; the command line names the ones that are set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil

from celeriac import signals
from celeriac.errors import BrokerError, TimeLimitExceeded
from celeriac.observe.records import ExitReason, SlotCounts
from celeriac.worker.child import Child
from celeriac.worker.control import Action
from celeriac.worker.master import TICK_S, ChildProcess, Master, _signal_name

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.worker.options import WorkerOptions
    from celeriac.worker.slots import Slot

logger = logging.getLogger("celeriac.worker")

COLD_STOP = "cold shutdown"


class ColdStop(BaseException):
    """Raised in the main thread by the second stop signal: leave the running task now.

    A BaseException, so the task's ``except Exception`` and the executor let it through.
    """


def _default_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


class SoloChild(Child):
    """The child loop, run in the node's own process."""

    def __init__(self, app: Celeriac, options: WorkerOptions, slot: Slot, event_fd: int) -> None:
        super().__init__(app, options, 0, slot, event_fd)
        self.stop_signals = 0
        #: the last stop signal received (None: none)
        self.last_signal: int | None = None
        #: number (``slot.seq``) of the task the supervisor stopped at its hard time limit
        self.hard_sent = -1

    def _orphaned(self) -> bool:
        return False  # this is the node: there is no master to lose

    def _name_process(self) -> None:
        pass  # stays MainProcess: tasks run in the node's own process

    def on_stop_signal(self, signum: int, frame: Any) -> None:
        """The first SIGTERM or SIGINT stops warm; another one, or SIGQUIT, stops cold."""
        self.stop_signals += 1
        self.last_signal = signum
        if signum == signal.SIGQUIT or self.stop_signals > 1:
            raise ColdStop(f"{COLD_STOP} ({signal.Signals(signum).name})")
        self.on_sigterm(signum, frame)

    def on_soft_limit(self, signum: int, frame: Any) -> None:
        """The supervisor says the running task passed its soft, or its hard, time limit."""
        if self.executor.in_body and self.hard_sent == self.slot.seq:
            raise TimeLimitExceeded("hard time limit exceeded (-P solo: raised in the task)")
        super().on_soft_limit(signum, frame)

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self.on_stop_signal)
        signal.signal(signal.SIGUSR1, self.on_soft_limit)


class SoloMaster(Master):
    """A worker node that runs its tasks in its own process (the ``solo`` pool)."""

    def __init__(self, app: Celeriac, options: WorkerOptions) -> None:
        super().__init__(app, options)
        self.child: SoloChild | None = None
        self._done = threading.Event()
        self._stop_logged = False

    def _pool_text(self) -> str:
        return f"solo pool (tasks run in this process, pid {os.getpid()}, one at a time)"

    def run(self) -> int:
        """Serve until shut down; the exit code as :meth:`Master.run`'s."""
        signals.worker_init.send(sender=self)
        signals.celeryd_after_setup.send(sender=self.hostname, instance=self, conf=self.app.conf)
        self.control.install()  # a stop while waiting for the broker
        if not self._connect():
            signals.worker_shutdown.send(sender=self)
            self._close()
            return 0 if self.stopping else 1
        self._banner()
        events_r, events_w = os.pipe()
        os.set_blocking(events_r, False)
        record = ChildProcess(0, os.getpid(), events_r, time.monotonic(), process=psutil.Process())
        self.children[record.pid] = record
        self.by_index[0] = record
        self.slots[0].reset()
        self.child = SoloChild(self.app, self.options, self.slots[0], events_w)
        if any(action in (Action.WARM_STOP, Action.COLD_STOP) for action in self.control.take()):
            self.child.stopping = True
        supervisor = threading.Thread(target=self._supervise, args=(record,), name="solo-supervisor")
        supervisor.start()
        signals.worker_ready.send(sender=self)
        try:
            self.child.main()
        except ColdStop as stop:
            _default_signals()
            self._cold_stop(record, str(stop))
        finally:
            _default_signals()  # the loop is over: one more stop signal ends the process at once
            self._done.set()
            supervisor.join()
            self._read_events(record)  # the loop's last counts
            signum = self.child.last_signal
            signals.worker_shutting_down.send(  # after the loop: the task ran in this very thread
                sender=self.hostname,
                sig=None if self.gave_up or signum is None else _signal_name(signum),
                how="Cold" if self.cold else "Warm",
                exitcode=1 if self.interrupted or self.gave_up else 0,
            )
            for fd in (events_r, events_w):
                os.close(fd)
            self._close(publish=True, shutdown_signal=True)
        logger.warning("%s stopped (%s shutdown)", self.options.nodename, "cold" if self.cold else "warm")
        return 1 if self.interrupted or self.gave_up else 0

    def _close(self, publish: bool = False, shutdown_signal: bool = False) -> None:
        if publish:
            try:
                self._publish_stats(state="stopped")
            except BrokerError as exc:
                logger.error("could not publish the final heartbeat: %s", exc)
        if shutdown_signal:
            signals.worker_shutdown.send(sender=self)
        self.control.close()
        self.app.close()

    def _cold_stop(self, record: ChildProcess, detail: str) -> None:
        """Settle the task the cold stop interrupted, as for a child killed under it."""
        self.stopping = self.cold = True
        logger.warning("%s: the running task is interrupted", detail)
        view = self.slots[0].read(writer_alive=False)  # the signal may have cut a write short
        if view.running:
            self.interrupted += 1
        lost = self._settle_lost(record, view, ExitReason.KILLED, detail)
        lost += self._settle_unwritten(record, view, detail)
        if lost:
            logger.error("%s%s", detail, lost)

    # -- the supervisor thread --------------------------------------------------------------

    def _supervise(self, record: ChildProcess) -> None:
        """What the master does while the main thread runs tasks, until the loop ends."""
        while not self._done.is_set():
            with contextlib.suppress(InterruptedError):
                select.select([record.events], [], [], TICK_S)
            try:
                self._read_events(record)
                now = time.monotonic()
                self._watch_time_limits(now)
                if self.memory.due(now):
                    self._sample_memory(now)
                if not self._done.is_set():
                    self._housekeeping(now)
                self._log_stop()
            except Exception:  # keep renewing leases whatever went wrong once
                logger.exception("solo supervisor: unexpected error")

    def _child_ready(self, child: ChildProcess) -> None:
        child.ready_at = time.monotonic()
        self.counted.setdefault(child.index, SlotCounts(child.index, time.time()))
        logger.info("solo: serving in this process (pid %d)", child.pid)

    def _watch_time_limits(self, now: float) -> None:
        assert self.child is not None
        slot = self.slots[0]
        view = slot.read()
        if not view.running:
            return
        if view.hard_deadline and now >= view.hard_deadline:
            if self.child.hard_sent != view.seq:
                self.child.hard_sent = view.seq
                logger.error(
                    "%s[%s] ran past its hard time limit of %g s: raising TimeLimitExceeded in it "
                    "(-P solo cannot kill it; prefork kills the child)",
                    view.name,
                    view.task_id,
                    view.hard_deadline - view.started,
                )
                os.kill(os.getpid(), signal.SIGUSR1)
        elif view.soft_deadline and now >= view.soft_deadline and view.soft_sent != view.seq:
            slot.mark_soft_sent(view.seq)
            logger.warning("soft time limit of %s[%s] reached", view.name, view.task_id)
            os.kill(os.getpid(), signal.SIGUSR1)

    def _log_stop(self) -> None:
        assert self.child is not None
        if self.child.stopping and not self._stop_logged:
            self._stop_logged = self.stopping = True
            logger.warning(
                "warm shutdown: the running task finishes, prefetched messages go back to their queues"
            )

    def _act(self, action: Action) -> None:
        """The broker stayed out of reach (see :meth:`Master._housekeeping`): stop warm."""
        if action is Action.WARM_STOP and self.child is not None:
            self.child.on_sigterm(signal.SIGTERM, None)
            self._log_stop()
