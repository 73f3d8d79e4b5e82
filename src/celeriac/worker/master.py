"""The master: spawns, watches, recycles and replaces children; it runs no task code.

One single-threaded loop waits on ``select()`` for signals (through the wake-up
pipe of :mod:`celeriac.worker.control`) and for events from children (one pipe
each), and on a short tick:

* reaps children that exited, records why (recycled for tasks or memory, warm
  shutdown, killed, crashed), settles the task a dead child was running and
  starts a replacement;
* enforces time limits from the shared-memory slots: SIGUSR1 at the soft limit,
  SIGKILL at the hard limit;
* renews the leases of its children's messages every third of the lease, so a
  task longer than the lease never runs twice;
* samples the memory of itself and of every child (:mod:`celeriac.worker.memwatch`),
  adds up the per-task memory tallies children send, kills a child over
  ``worker_max_memory_per_child_hard`` and warns when recycling costs too much;
* publishes the node's heartbeat with per-child statistics.

What happens to the task of a child that dies while running it:

=====================================  ==============================================
case                                   result
=====================================  ==============================================
hard time limit                        failed (TimeLimitExceeded); message acked, or
                                       dead-lettered with ``acks_late`` and
                                       ``task_acks_on_failure_or_timeout=False``
early ack (default)                    failed (WorkerLostError); not run again. So
                                       is a task that had ended when the child died
                                       but whose result was not written yet (the
                                       slot's ledger names it), unless a result was
                                       stored
``acks_late`` (+ reject_on_worker_lost)  delivered again at once; dead-lettered after
                                       ``task_delivery_limit`` deliveries
``acks_late``, reject_on_worker_lost   failed (WorkerLostError); message acked
  = False
=====================================  ==============================================

Messages the child had prefetched but not started go back to their queue at once;
if it died (crashed or killed) before starting any task, their delivery counts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from celeriac import signals
from celeriac.brokers.base import ACK, DEAD, QUEUE
from celeriac.errors import BrokerError, TimeLimitExceeded, WorkerLostError
from celeriac.hooks import DeadLettered, LostTask
from celeriac.observe.records import ChildExit, ChildStats, ExitReason, SlotCounts, WorkerStats
from celeriac.worker.child import consumer_id, run_child
from celeriac.worker.control import Action, Control
from celeriac.worker.execute import task_policy
from celeriac.worker.link import BrokerLink
from celeriac.worker.memwatch import Life, MemoryWatch, Sample
from celeriac.worker.pipe import Exit, PipeMessageError, Ready, Report, decode
from celeriac.worker.prefetch import PrefetchWindow
from celeriac.worker.runstats import RunTable, add_finished
from celeriac.worker.slots import SlotTable, SlotView

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.worker.options import WorkerOptions

logger = logging.getLogger("celeriac.worker")

TICK_S = 0.1
#: Signals a child handles itself; blocked across fork() until its handlers are in place.
CHILD_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD})
#: How often the master runs the broker's housekeeping (SQLite: WAL checkpoints).
BROKER_HOUSEKEEPING_S = 0.5
#: A child that dies sooner than this after starting, having run nothing, counts as a failed start.
QUICK_DEATH_S = 2.0
MAX_RESPAWN_DELAY_S = 30.0
#: Tasks the log line of a dead child names, of those it ended with their results unwritten.
UNWRITTEN_NAMED = 5
#: Exits no one asked for.
_DEATHS = (ExitReason.CRASHED, ExitReason.KILLED)
RECENT_EXITS = 20
LOST_WITH_NODE = (
    "the worker node running this task died (its lease expired); with early ack "
    "(task_acks_late=False) it is not run again: `celeriac deadletters requeue` runs it "
    "again if that is safe"
)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


@dataclass(slots=True)
class ChildProcess:
    """The master's view of one child."""

    index: int
    pid: int
    events: int
    spawned_at: float
    ready_at: float | None = None
    buffer: bytes = b""
    #: the child's last word (None: it died without one)
    exit_event: Exit | None = None
    killing: tuple[ExitReason, str] | None = None
    process: psutil.Process | None = None
    stats: dict[str, int] = field(default_factory=dict)
    #: the prefetch window the child last reported
    prefetch: int | None = None


class Master:
    """Supervises the children of one worker node."""

    def __init__(self, app: Celeriac, options: WorkerOptions) -> None:
        self.app = app
        self.options = options
        # Build the hooks (and the result backend under them) before any child exists: a setting
        # they cannot be built from stops the worker here, once, with a ConfigurationError (exit
        # code 2), instead of crashing every child at start. The children inherit them built.
        self.hooks = app.hooks
        self.control = Control()
        self.slots = SlotTable(options.concurrency)
        self.children: dict[int, ChildProcess] = {}
        self.by_index: dict[int, ChildProcess] = {}
        self.respawn_at: dict[int, float] = {}
        self.quick_deaths = 0
        self.stopping = False
        self.cold = False
        self.interrupted = 0
        self.gave_up = False
        self.link = BrokerLink(
            app.broker.location, app.conf.broker_connection_retry, app.conf.broker_connection_max_retries
        )
        self.started_at = time.time()
        self.exits: dict[str, int] = {}
        self.recent_exits: list[ChildExit] = []
        self.tasks_done = 0
        self.tasks_failed = 0
        self.runs = RunTable()
        #: per child slot: runs finished per queue, and when (rates aligned to the counting)
        self.counted: dict[int, SlotCounts] = {}
        self.memory = MemoryWatch(
            options.memory_interval,
            options.max_tasks_per_child,
            options.max_memory_per_child,
            options.max_memory_per_child_hard,
        )
        self._next_lease = 0.0
        self._next_broker_housekeeping = 0.0
        self._next_stats = 0.0

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        """The node name (Celery's ``WorkController.hostname``, for signal receivers)."""
        return self.options.nodename

    def run(self) -> int:
        """Serve until shut down. Returns the exit code: 0, or 1 if a cold stop cut tasks short
        or the broker could not be reached."""
        signals.worker_init.send(sender=self)
        signals.celeryd_after_setup.send(sender=self.hostname, instance=self, conf=self.app.conf)
        self.control.install()
        if not self._connect():
            signals.worker_shutdown.send(sender=self)
            self.control.close()
            self.app.close()
            return 0 if self.stopping else 1
        self._banner()
        for index in range(self.options.concurrency):
            self._spawn(index)
        signals.worker_ready.send(sender=self)
        try:
            self._loop()
        finally:
            try:
                self._publish_stats(state="stopped")
            except BrokerError as exc:
                logger.error("could not publish the final heartbeat: %s", exc)
            signals.worker_shutdown.send(sender=self)
            self.control.close()
            self.app.close()
        logger.warning("%s stopped (%s shutdown)", self.options.nodename, "cold" if self.cold else "warm")
        return 1 if self.interrupted or self.gave_up else 0

    def _connect(self) -> bool:
        """Declare the queues, waiting for the broker per broker_connection_retry_on_startup."""
        broker, conf = self.app.broker, self.app.conf
        while True:
            try:
                for queue in self.options.queues:
                    broker.declare_queue(queue)
                warning = broker.persistence_warning()
            except BrokerError as exc:
                if not conf.broker_connection_retry_on_startup:
                    logger.error(
                        "cannot reach the broker: %s (broker_connection_retry_on_startup is False)", exc
                    )
                    return False
                self.link.failed("starting", exc)
                reason = self.link.give_up_reason(starting=True)
                if reason is not None:
                    logger.error("giving up: %s", reason)
                    return False
                if not self._pause(self.link.pause()):
                    return False
                continue
            self.link.ok()
            if warning and any(q.durable for q in self.options.queues):
                logger.warning("%s", warning)
            return True

    def _pause(self, seconds: float) -> bool:
        """Sleep, but wake for signals; False if a stop was asked for meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select([self.control.wake_r], [], [], left)
                if readable:
                    self.control.drain_wakeups()
            for action in self.control.take():
                if action in (Action.WARM_STOP, Action.COLD_STOP):
                    self.stopping = True
                    return False
        return True

    def _banner(self) -> None:
        options = self.options
        window = PrefetchWindow(options.prefetch_multiplier).describe()
        logger.warning(
            "%s ready: %s, queues %s, prefetch %s per child, broker %s, tasks: %s",
            options.nodename,
            self._pool_text(),
            ", ".join(f"{q.name}{'' if q.durable else ' (transient)'}" for q in options.queues),
            window,
            self.app.broker.location,
            ", ".join(self.app.task_names()) or "none",
        )

    def _pool_text(self) -> str:
        """How this node runs tasks, for its start-up line."""
        return f"{self.options.concurrency} children"

    def _spawn(self, index: int) -> None:
        slot = self.slots[index]
        slot.reset()
        read_fd, write_fd = os.pipe()
        signals.worker_before_create_process.send(sender=self)
        for handler in logging.getLogger().handlers:
            handler.flush()
        # A signal between fork() and the child installing its own handlers would run
        # the master's handler in the child and be lost: hold them until then.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read_fd)
            for other in self.children.values():
                os.close(other.events)
            self.control.close()
            run_child(self.app, self.options, index, slot, write_fd, blocked)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = ChildProcess(index, pid, read_fd, time.monotonic())
        try:
            child.process = psutil.Process(pid)
        except psutil.Error:
            child.process = None
        self.children[pid] = child
        self.by_index[index] = child
        logger.info("started child %d (pid %d)", index, pid)

    def _loop(self) -> None:
        while True:
            for action in self.control.take():
                self._act(action)
            self._reap()
            if self.stopping and not self.children:
                return
            now = time.monotonic()
            self._respawn_due(now)
            self._check_children(now)
            if self.memory.due(now):
                self._sample_memory(now)
            self._housekeeping(now)
            self._wait(now)

    def _wait(self, now: float) -> None:
        fds = [self.control.wake_r, *(c.events for c in self.children.values())]
        timeout = TICK_S
        if self.respawn_at:
            timeout = max(0.0, min(timeout, min(self.respawn_at.values()) - now))
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        for fd in readable:
            if fd == self.control.wake_r:
                self.control.drain_wakeups()
                continue
            child = next((c for c in self.children.values() if c.events == fd), None)
            if child is not None:
                self._read_events(child)

    def _act(self, action: Action) -> None:
        if action is Action.WARM_STOP and not self.stopping:
            self.stopping = True
            self.respawn_at.clear()
            logger.warning("warm shutdown: running tasks finish, prefetched messages go back to their queues")
            self._shutting_down("Warm")
            for child in self.children.values():
                self._signal(child, signal.SIGTERM)
        elif action is Action.COLD_STOP and not self.cold:
            self.stopping = self.cold = True
            self.respawn_at.clear()
            logger.warning("cold shutdown: killing %d children", len(self.children))
            for child in self.children.values():
                if self.slots[child.index].read().running:
                    self.interrupted += 1
                child.killing = (ExitReason.KILLED, "cold shutdown")
                self._signal(child, signal.SIGKILL)
            self._shutting_down("Cold")

    def _shutting_down(self, how: str) -> None:
        """``worker_shutting_down``, with Celery's arguments: the signal's name (None: the
        master stopped by itself), ``Warm`` or ``Cold``, and the exit code the master will have."""
        signum = self.control.last_signal
        signals.worker_shutting_down.send(
            sender=self.hostname,
            sig=None if self.gave_up or signum is None else _signal_name(signum),
            how=how,
            exitcode=1 if self.interrupted or self.gave_up else 0,
        )

    @staticmethod
    def _signal(child: ChildProcess, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    # -- child events -----------------------------------------------------------------------

    def _read_events(self, child: ChildProcess) -> None:
        try:
            while True:
                data = os.read(child.events, 65536)
                if not data:
                    break
                child.buffer += data
        except BlockingIOError:
            pass
        except OSError:
            return
        *lines, child.buffer = child.buffer.split(b"\n")
        for line in lines:
            try:
                message = decode(line)
            except PipeMessageError:
                logger.warning("child %d sent an unreadable event: %r", child.index, line[:200])
                continue
            match message:
                case Report():
                    self._add_counts(child, message.tasks, message.runs, message.counted_at)
                    child.prefetch = message.window
                case Ready():
                    self._child_ready(child)
                case Exit():
                    child.exit_event = message
                    self._add_counts(child, message.tasks, message.runs, message.counted_at)

    def _child_ready(self, child: ChildProcess) -> None:
        child.ready_at = time.monotonic()
        # a slot's count starts when its first child is ready; a replacement carries it on
        self.counted.setdefault(child.index, SlotCounts(child.index, time.time()))
        # being ready does not end a run of quick deaths (a child may die on its first
        # message every time): only a child that ran a task or lived on does, at its exit
        self.memory.starts.started(child.ready_at - child.spawned_at)
        logger.info(
            "child %d (pid %d) ready %.3f s after fork",
            child.index,
            child.pid,
            child.ready_at - child.spawned_at,
        )

    def _add_counts(
        self, child: ChildProcess, tasks: dict[str, list[Any]], runs: list[list[Any]], at: float
    ) -> None:
        """Add what a child ran since its last report to the node's and its slot's totals."""
        self.memory.book.merge(tasks)
        self.runs.merge(runs)
        slot = self.counted.setdefault(child.index, SlotCounts(child.index, at))
        add_finished(slot.finished, runs)
        slot.at = max(slot.at, at)

    # -- exits ------------------------------------------------------------------------------

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._child_exited(child, status)

    def _exit_reason(self, child: ChildProcess, status: int) -> tuple[ExitReason, str]:
        if child.exit_event is not None:
            return child.exit_event.reason, child.exit_event.detail
        if child.killing is not None:
            return child.killing
        if os.WIFSIGNALED(status):
            signum = os.WTERMSIG(status)
            hint = " (kill -9, or the kernel's out-of-memory killer)" if signum == signal.SIGKILL else ""
            return ExitReason.KILLED, f"killed by signal {signum} ({_signal_name(signum)}){hint}"
        return ExitReason.CRASHED, f"exited with code {os.waitstatus_to_exitcode(status)} without saying why"

    def _child_exited(self, child: ChildProcess, status: int) -> None:
        self._read_events(child)
        os.close(child.events)
        self.by_index.pop(child.index, None)
        reason, detail = self._exit_reason(child, status)
        view = self.slots[child.index].read(writer_alive=False)
        self.tasks_done += view.done
        self.tasks_failed += view.failed
        lost = self._settle_lost(child, view, reason, detail) + self._settle_unwritten(child, view, detail)
        lifetime = time.monotonic() - child.spawned_at
        self._count_recycle(child, reason, view)
        record = ChildExit(child.index, child.pid, reason, detail + lost, view.done, lifetime, time.time())
        self.exits[reason.value] = self.exits.get(reason.value, 0) + 1
        self.recent_exits = [*self.recent_exits[-(RECENT_EXITS - 1) :], record]
        level = (
            logging.INFO
            if reason in (ExitReason.MAX_TASKS, ExitReason.MAX_MEMORY, ExitReason.SHUTDOWN)
            else logging.ERROR
        )
        logger.log(
            level,
            "child %d (pid %d) exited after %d tasks: %s: %s%s",
            child.index,
            child.pid,
            view.done,
            reason.value,
            detail,
            lost,
        )
        if not self.stopping:
            self._schedule_respawn(child, reason, view, lifetime)

    def _count_recycle(self, child: ChildProcess, reason: ExitReason, view: SlotView) -> None:
        """Charge a memory exit to its task, and weigh what replacing the child costs."""
        said = child.exit_event
        task = None if said is None else said.task
        if reason is ExitReason.MAX_MEMORY and task is not None:
            self.memory.book.recycled_after(task)
        elif reason is ExitReason.MAX_MEMORY_HARD and view.running:
            self.memory.book.killed_during(view.name)
        if reason not in (ExitReason.MAX_TASKS, ExitReason.MAX_MEMORY) or child.ready_at is None:
            return
        life = Life(
            child.ready_at - child.spawned_at,
            0.0 if said is None else said.busy_s,
            view.done,
            reason,
        )
        warning = self.memory.recycled(life)
        if warning is not None:
            logger.warning("%s", warning)

    def _settle_lost(self, child: ChildProcess, view: SlotView, reason: ExitReason, detail: str) -> str:
        """Release the dead child's messages and settle the task it was running."""
        consumer = consumer_id(self.options.nodename, child.pid)
        broker = self.app.broker
        try:
            if not view.running:
                # a child that died before starting any task may have died on a message it
                # held (decoding it, say): their delivery counts, so the delivery limit ends a loop
                died_early = not self.stopping and reason in _DEATHS and view.seq == 0
                broker.consumer_lost(consumer, [], detail, count_unstarted=died_early)
                return ""
            policy = task_policy(self.app.conf, self.app.tasks.get(view.name))
            acks_late = view.acks_late
            # RabbitMQ returns the unacked messages of a dead child's connection whatever we say
            requeued_anyway = acks_late and broker.requeues_dead_consumers
            if reason is ExitReason.HARD_TIME_LIMIT:
                running_to = DEAD if acks_late and not policy.acks_on_failure else ACK
                exc: BaseException = TimeLimitExceeded(detail)
                redelivered = requeued_anyway
            else:
                redelivered = acks_late and (policy.reject_on_worker_lost or requeued_anyway)
                running_to = QUEUE if redelivered else ACK
                exc = WorkerLostError(f"worker lost while running the task: {detail}")
            dead = broker.consumer_lost(consumer, [view.tag], detail, running_to=running_to)
        except BrokerError as exc_broker:
            logger.error(
                "could not release the messages of child %d: %s (their leases will expire)",
                child.index,
                exc_broker,
            )
            return ""
        if dead:
            self.app.hooks.after_dead_letter(DeadLettered(detail, view.task_id, view.name, ""))
            return f"; task {view.name}[{view.task_id}] went to the dead letters"
        self.app.hooks.after_task_lost(LostTask(view.task_id, view.name, exc, detail, redelivered))
        if redelivered and requeued_anyway:
            return (
                f"; task {view.name}[{view.task_id}] will run again (task_acks_late: the broker "
                "returns a dead consumer's unacked messages)"
            )
        if redelivered:
            return f"; task {view.name}[{view.task_id}] will run again (task_acks_late)"
        return f"; task {view.name}[{view.task_id}] marked failed ({type(exc).__name__})"

    def _settle_unwritten(self, child: ChildProcess, view: SlotView, detail: str) -> str:
        """Early ack: record the tasks the dead child had ended whose results it had not
        written yet (its slot's ledger), as lost, where no result of theirs was stored."""
        ended = [
            (task_id, name)
            for task_id, name in self.slots[child.index].unwritten()
            if not (view.running and task_id == view.task_id)  # settled as the running task
        ]
        if not ended:
            return ""
        why = f"the child was lost after the task ended, before its result was stored: {detail}"
        for task_id, name in ended:
            self.app.hooks.after_task_lost(
                LostTask(task_id, name, WorkerLostError(why), detail, redelivered=False, ended=True)
            )
        named = ", ".join(f"{name}[{task_id}]" for task_id, name in ended[:UNWRITTEN_NAMED])
        more = f" and {len(ended) - UNWRITTEN_NAMED} more" if len(ended) > UNWRITTEN_NAMED else ""
        return (
            f"; {len(ended)} task(s) had ended with their results not yet written, marked failed "
            f"(WorkerLostError) where no result was stored: {named}{more}"
        )

    def _schedule_respawn(
        self, child: ChildProcess, reason: ExitReason, view: SlotView, lifetime: float
    ) -> None:
        failed_start = (
            reason in (ExitReason.CRASHED, ExitReason.KILLED, ExitReason.START_TIMEOUT)
            and view.done == 0
            and lifetime < QUICK_DEATH_S
        )
        self.quick_deaths = self.quick_deaths + 1 if failed_start else 0
        delay = 0.0 if self.quick_deaths < 2 else min(MAX_RESPAWN_DELAY_S, 0.5 * 2 ** (self.quick_deaths - 2))
        if delay:
            logger.error("children keep dying at start; next start of child %d in %.1f s", child.index, delay)
        self.respawn_at[child.index] = time.monotonic() + delay

    def _respawn_due(self, now: float) -> None:
        for index, when in list(self.respawn_at.items()):
            if when <= now and not self.stopping:
                del self.respawn_at[index]
                self._spawn(index)

    # -- watching ---------------------------------------------------------------------------

    def _kill(self, child: ChildProcess, reason: ExitReason, detail: str) -> None:
        if child.killing is None:
            child.killing = (reason, detail)
            logger.error("killing child %d (pid %d): %s", child.index, child.pid, detail)
            self._signal(child, signal.SIGKILL)

    def _check_children(self, now: float) -> None:
        for child in list(self.children.values()):
            if child.ready_at is None:
                if now - child.spawned_at > self.options.proc_alive_timeout:
                    self._kill(
                        child,
                        ExitReason.START_TIMEOUT,
                        f"not ready after {self.options.proc_alive_timeout:.1f} s "
                        "(worker_proc_alive_timeout)",
                    )
                continue
            slot = self.slots[child.index]
            view = slot.read()
            uss = self.memory.over_hard_limit(child.process)
            if uss is not None:
                doing = f" while running {view.name}[{view.task_id}]" if view.running else " while idle"
                self._kill(
                    child,
                    ExitReason.MAX_MEMORY_HARD,
                    f"own memory (USS) {uss} KiB > worker_max_memory_per_child_hard="
                    f"{self.memory.hard_kib} KiB{doing}",
                )
                continue
            if not view.running:
                continue
            if view.hard_deadline and now >= view.hard_deadline:
                limit = view.hard_deadline - view.started
                self._kill(
                    child,
                    ExitReason.HARD_TIME_LIMIT,
                    f"{view.name}[{view.task_id}] ran past its hard time limit of {limit:g} s",
                )
            elif view.soft_deadline and now >= view.soft_deadline and view.soft_sent != view.seq:
                slot.mark_soft_sent(view.seq)
                self._signal(child, signal.SIGUSR1)
                logger.warning("soft time limit of %s[%s] reached", view.name, view.task_id)

    def _housekeeping(self, now: float) -> None:
        """Periodic broker work: maintenance, lease renewal, heartbeats (paused while it is down)."""
        if not self.link.due(now):
            return
        what = ""
        try:
            if now >= self._next_lease or self.link.down:
                what = "renewing leases"
                self._next_lease = now + self.options.lease_seconds / 3
                consumers = [consumer_id(self.options.nodename, pid) for pid in self.children]
                self.app.broker.extend_leases(consumers)
                what = "recovering lost tasks"
                self._recover_lost()
            if now >= self._next_broker_housekeeping:
                what = "housekeeping"
                self._next_broker_housekeeping = now + BROKER_HOUSEKEEPING_S
                self.app.broker.housekeeping()
            if now >= self._next_stats:
                what = "publishing the heartbeat"
                self._next_stats = now + self.options.stats_interval
                self._publish_stats()
                self.app.hooks.on_heartbeat()
        except BrokerError as exc:
            self.link.failed(what, exc)
            reason = self.link.give_up_reason()
            if reason is not None and not self.stopping:
                logger.error("stopping the worker: %s", reason)
                self.gave_up = True
                self._act(Action.WARM_STOP)
            return
        self.link.ok()

    def _recover_lost(self) -> None:
        """Record early-ack tasks whose node died mid-task (found through their expired lease)."""
        for letter in self.app.broker.recover_lost(LOST_WITH_NODE):
            dead = DeadLettered.of(letter, LOST_WITH_NODE)
            logger.error(
                "task %s[%s] was running on a worker node that died: %s",
                dead.task_name,
                dead.task_id,
                LOST_WITH_NODE,
            )
            self.app.hooks.after_dead_letter(dead)

    # -- statistics -------------------------------------------------------------------------

    def _sample_memory(self, now: float) -> None:
        warning = self.memory.sample(now, [(pid, child.process) for pid, child in self.children.items()])
        if warning is not None:
            logger.warning("%s", warning)

    def stats(self, state: str = "running") -> WorkerStats:
        """The node's current statistics."""
        now = time.monotonic()
        children = []
        done = self.tasks_done
        failed = self.tasks_failed
        for index in sorted(self.by_index):
            child = self.by_index[index]
            view = self.slots[index].read()
            sample = self.memory.children.get(child.pid) or Sample()
            done += view.done
            failed += view.failed
            children.append(
                ChildStats(
                    index=index,
                    pid=child.pid,
                    started_at=time.time() - (now - child.spawned_at),
                    ready_s=None if child.ready_at is None else child.ready_at - child.spawned_at,
                    tasks=view.done,
                    failed=view.failed,
                    running=f"{view.name}[{view.task_id}]" if view.running else None,
                    running_for_s=now - view.started if view.running else None,
                    rss_kib=sample.rss_kib,
                    uss_kib=sample.uss_kib,
                    peak_rss_kib=sample.peak_rss_kib,
                    prefetch=child.prefetch,
                )
            )
        return WorkerStats(
            node=self.options.nodename,
            pid=os.getpid(),
            started_at=self.started_at,
            at=time.time(),
            queues=self.options.queue_names,
            concurrency=self.options.concurrency,
            prefetch=PrefetchWindow(self.options.prefetch_multiplier).describe(),
            master_rss_kib=self.memory.probe.rss_kib(),
            tasks=done,
            failed=failed,
            children=children,
            exits=dict(self.exits),
            recent_exits=list(self.recent_exits),
            state=state,
            broker_pool=self._pool_stats(),
            memory=self.memory.report(),
            runs=self.runs.records(),
            counted=self._slot_counts(),
        )

    def _slot_counts(self) -> list[SlotCounts]:
        """Every slot's count; a slot with no child counts nothing more, so its count is true now."""
        now = time.time()
        return [
            SlotCounts(index, slot.at if index in self.by_index else max(slot.at, now), dict(slot.finished))
            for index, slot in sorted(self.counted.items())
        ]

    def _pool_stats(self) -> dict[str, Any] | None:
        stats = self.app.broker.pool_stats()
        return None if stats is None else stats.as_dict()

    def _publish_stats(self, state: str = "running") -> None:
        ttl = self.options.stats_interval * 3 if state == "running" else 3600.0
        self.app.broker.put_node_stats(self.options.nodename, self.stats(state).to_json(), ttl)
