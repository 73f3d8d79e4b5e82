"""Execute one delivery, as small steps: decode → validate → admit → hooks → call → classify → settle.

:meth:`Executor.execute` returns one :class:`Executed` record: what is left to do
with the delivery (its :class:`Settlement`), the name the run is logged and counted
under, and the outcome's state.

Admission: before a task runs, :meth:`Executor.admit` decides whether it runs now.
A message that arrived before its ETA is deferred (published again, unchanged, to be
due at its ETA, and this delivery acked); an expired one is revoked (REVOKED stored,
acked, not run); then the hooks' ``admit`` may defer or revoke it too.

A retry is one event, handled here: ``Task.retry`` builds the next attempt and raises
:class:`~celeriac.errors.Retry` carrying it; the executor then, in this order,
(1) stores RETRY at once through the ``before_retry`` hook (not buffered: the next
attempt may finish within a millisecond in another child), (2) publishes the next
attempt, (3) settles this delivery (ack) with the rest. A publish that fails makes
the run a failure, so the task is never lost silently. ``Task.retry(throw=False)``
runs steps 1 and 2 at once, through ``request.retry_handler``, as Celery sends such
a retry at once; a failed publish then raises in the task.

``Reject`` (late ack; under early ack the message is gone already, and the run is a
FAILURE holding the ``Reject``, as Celery records it): ``Reject()`` dead-letters the
message with the task's reason (FAILURE stored, ``task_failure`` sent); ``Reject(requeue=True)`` puts it back
as a redelivery, so the next run sees ``delivery_info['redelivered']``, and counts the
delivery: the run on the ``task_delivery_limit``-th delivery dead-letters it instead
(logged, and FAILURE stored with the reason), so a task that always requeues itself
cannot run forever.

Nothing here raises for bad input: a message that cannot run is dead-lettered
with its reason, and the caller goes on with the next one.

Acknowledgement modes:

* early ack (the default, ``task_acks_late=False``): the message is marked
  started just before the task runs (one broker write) and removed with the next
  batch of acks. At most once: it is never delivered again. The mark succeeds only
  while this child still holds the message's lease; a node that stalled past its
  lease finds the message lost, drops it unrun (settled: no ack) and logs it. If the child dies the
  master records the task as failed (WorkerLostError), also when the task had
  ended and its result was still waiting for the next batch (the slot's ledger
  names such tasks); if the whole node dies, another node's master moves it to
  the dead letters with the reason.
* late ack (``task_acks_late=True``): the task's ack is batched with others
  after it ran. At least once: if the child dies, the task is delivered again.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celeriac.brokers.base import Broker, DeadLetter, Delivery
from celeriac.context import (
    Request,
    current_request,
    custom_headers,
    in_worker_task,
    pop_request,
    push_request,
)
from celeriac.errors import BrokerError, Ignore, Reject, Retry, TaskRevokedError
from celeriac.hooks import ADMIT, DEFER, REVOKE, RUN, Admission, DeadLettered, HookChain, Outcome
from celeriac.protocol import serializers
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.validate import InvalidMessage, decode
from celeriac.states import FAILURE, IGNORED, READY_STATES, REJECTED, RETRY, REVOKED, SUCCESS

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.config import Settings
    from celeriac.task import Task
    from celeriac.worker.slots import Slot


class NotStarted(BrokerError):
    """The early ack failed, so the task did not start: the child keeps the message."""


logger = logging.getLogger("celeriac.worker")

ACK, REQUEUE, DEAD, SETTLED = "ack", "requeue", "dead", "settled"
#: A message whose ETA is further away than this is scheduled again instead of run.
ETA_TOLERANCE_S = 0.05


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to do with a delivery after it was handled."""

    action: str
    reason: str = ""


_SETTLED = Settlement(SETTLED)
_ACK = Settlement(ACK)


@dataclass(frozen=True, slots=True)
class Executed:
    """What :meth:`Executor.execute` did with one delivery."""

    settlement: Settlement
    #: the name the run is logged and counted under (None: the delivery named no known task)
    name: str | None = None
    #: the outcome's state (None: the task did not run)
    state: str | None = None


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """A task's options with the settings filled in (computed once per task name)."""

    acks_late: bool
    acks_on_failure: bool
    reject_on_worker_lost: bool
    hard_limit: float | None
    soft_limit: float | None
    ignore_result: bool
    track_started: bool


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def task_policy(conf: Settings, task: Task | None) -> TaskPolicy:
    """The effective options of ``task`` (the settings alone for an unknown task)."""

    def option(name: str) -> Any:
        return None if task is None else getattr(task, name)

    return TaskPolicy(
        acks_late=_pick(option("acks_late"), conf.task_acks_late),
        acks_on_failure=_pick(option("acks_on_failure_or_timeout"), conf.task_acks_on_failure_or_timeout),
        reject_on_worker_lost=_pick(option("reject_on_worker_lost"), conf.task_reject_on_worker_lost),
        hard_limit=_pick(option("time_limit"), conf.task_time_limit),
        soft_limit=_pick(option("soft_time_limit"), conf.task_soft_time_limit),
        ignore_result=_pick(option("ignore_result"), conf.task_ignore_result),
        track_started=_pick(option("track_started"), conf.task_track_started),
    )


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the worker's own frames above the task's code."""
    tb = exc.__traceback__
    while (
        tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR)
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


#: Celery's fallback for chords on result backends that cannot count their members.
CHORD_UNLOCK = "celery.chord_unlock"
CHORD_UNLOCK_ADVICE = (
    "celery.chord_unlock is how a Celery producer completes a chord on a result backend that "
    "cannot count chord members; celeriac does not run it (its workers count chord members "
    "themselves): send the chord from celeriac, or from Celery with a Redis result backend"
)


class Executor:
    """Runs deliveries for one child process."""

    def __init__(
        self, app: Celeriac, broker: Broker, hooks: HookChain, hostname: str, slot: Slot | None = None
    ) -> None:
        self.app = app
        self.broker = broker
        self.producer = app.producer
        self.hooks = hooks
        self.hostname = hostname
        self.slot = slot
        conf = app.conf
        self.accept = serializers.accepted(conf.accept_content)
        self.max_bytes: int = conf.task_message_max_bytes
        self._policies: dict[str, TaskPolicy] = {}
        self._routes: dict[str, tuple[str, str]] = {}
        #: True only while task code runs (the soft time limit fires only then).
        self.in_body = False
        self._retry_handler = self.send_retry  # bound once, not per task

    # -- steps ------------------------------------------------------------------------------

    def policy(self, task: Task) -> TaskPolicy:
        """The effective options of ``task``."""
        found = self._policies.get(task.name)
        if found is None:
            found = self._policies[task.name] = task_policy(self.app.conf, task)
        return found

    def dead_letter(
        self, delivery: Delivery, reason: str, task_id: str | None, task_name: str | None
    ) -> Settlement:
        """Send ``delivery`` to the dead letters now, tell the hooks, and log it."""
        logger.error(
            "message %s on queue %r dead-lettered: %s", task_id or delivery.tag, delivery.queue, reason
        )
        self.broker.reject([delivery], requeue=False, reason=reason)
        self.hooks.after_dead_letter(DeadLettered(reason, task_id, task_name, delivery.queue))
        return _SETTLED

    def report_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Log messages the broker dead-lettered by itself while fetching, and tell the hooks
        (so their results become FAILURE instead of staying PENDING)."""
        for letter in letters:
            dead = DeadLettered.of(letter)
            if dead.task_id is None:  # not even its headers could be read
                logger.error("a message on queue %r dead-lettered: %s", dead.queue, dead.reason)
            else:
                logger.error(
                    "task %s[%s] on queue %r dead-lettered: %s",
                    dead.task_name,
                    dead.task_id,
                    dead.queue,
                    dead.reason,
                )
            self.hooks.after_dead_letter(dead)

    def _resolve(self, delivery: Delivery) -> tuple[TaskMessage, Task] | InvalidMessage:
        message = decode(delivery.envelope, self.accept, self.max_bytes)
        if isinstance(message, InvalidMessage):
            return message
        task = self.app.tasks.get(message.task)
        if task is None:
            known = ", ".join(self.app.task_names()[:10]) or "none"
            reason = f"unknown task {message.task!r}: not registered in this worker (it knows: {known})"
            if message.task == CHORD_UNLOCK:
                reason += f"; {CHORD_UNLOCK_ADVICE}"
            return InvalidMessage(reason, message.id, message.task)
        return message, task

    def _route(self, queue: str) -> tuple[str, str]:
        """The exchange and routing key of ``queue``'s declaration (what a message there was sent with)."""
        found = self._routes.get(queue)
        if found is None:
            declared = self.app.router.queues.get(queue)
            found = (declared.exchange.name, declared.routing_key) if declared else (queue, queue)
            self._routes[queue] = found
        return found

    def _request(self, message: TaskMessage, task: Task, policy: TaskPolicy, delivery: Delivery) -> Request:
        exchange, routing_key = self._route(delivery.queue)
        properties = delivery.envelope.properties
        return Request(
            id=message.id,
            task=message.task,
            args=message.args,
            kwargs=message.kwargs,
            retries=message.retries,
            eta=message.eta,
            expires=message.expires,
            root_id=message.root_id,
            parent_id=message.parent_id,
            group=message.group,
            origin=message.origin,
            hostname=self.hostname,
            timelimit=(
                _pick(message.time_limit, policy.hard_limit),
                _pick(message.soft_time_limit, policy.soft_limit),
            ),
            delivery_info={
                "queue": delivery.queue,
                "routing_key": routing_key,
                "exchange": exchange,
                "redelivered": delivery.deliveries > 1,
                "delivery_tag": delivery.tag,
                "priority": message.priority,
            },
            headers=custom_headers(message),
            properties=properties,
            reply_to=message.reply_to or None,
            correlation_id=properties.get("correlation_id"),
            priority=message.priority,
            is_eager=False,
            called_directly=False,
            message=message,
            acks_late=policy.acks_late,
            ignore_result=message.ignore_result or policy.ignore_result,
            track_started=policy.track_started,
            retry_handler=self._retry_handler,
            callbacks=message.embed.get("callbacks") or None,
            errbacks=message.embed.get("errbacks") or None,
            chain=message.embed.get("chain") or None,
            chord=message.embed.get("chord") or None,
            group_index=message.group_index,
        )

    def _call(self, task: Task, request: Request) -> Outcome:
        started = time.perf_counter()
        request_token = push_request(request)
        worker_token = in_worker_task.set(True)
        try:
            outcome = self._body(task, request)
            outcome.runtime = time.perf_counter() - started
            self._handlers(task, request, outcome)
            self.hooks.after_task(request, outcome)
        finally:
            in_worker_task.reset(worker_token)
            pop_request(request_token)
        return outcome

    def _body(self, task: Task, request: Request) -> Outcome:
        try:
            self.hooks.before_task(request)
            self.in_body = True
            try:
                task.before_start(request.id or "", request.args, request.kwargs)
                value = task.call_with_autoretry(request.args, request.kwargs)
            finally:
                self.in_body = False
            return Outcome(SUCCESS, value)
        except Retry as retry:
            try:
                self.send_retry(retry)
            except Exception as exc:
                logger.error("Task %s[%s] could not send its retry: %r", request.task, request.id, exc)
                return Outcome(FAILURE, exc=exc, traceback=user_traceback(exc))
            return Outcome(RETRY, exc=retry.exc or retry, traceback=user_traceback(retry.exc or retry))
        except Ignore:
            return Outcome(IGNORED)
        except Reject as reject:
            if request.acks_late:
                return Outcome(REJECTED, exc=reject)
            # early ack: the message is gone, nothing is left to dead-letter or requeue; the run
            # ends as a FAILURE holding the Reject (as Celery records it), never PENDING for ever
            logger.warning(
                "Task %s[%s] raised %r, but its message was acked before it ran (task_acks_late is "
                "off): recorded as a failure; with acks_late=True a Reject dead-letters or requeues it",
                request.task,
                request.id,
                reject,
            )
            return Outcome(FAILURE, exc=reject, traceback=user_traceback(reject))
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            return Outcome(FAILURE, exc=exc, traceback=user_traceback(exc))

    def send_retry(self, retry: Retry) -> None:
        """The retry event of the running task: store RETRY now, then publish the next attempt.

        Called when the task raised the Retry, and by ``Task.retry(throw=False)`` at once (as
        Celery sends it), through ``request.retry_handler``. A failed publish raises.
        """
        request = current_request()
        assert request is not None, "send_retry runs inside a task"
        self.hooks.before_retry(request, retry)
        if retry.outbound is not None:  # None: a Retry raised by hand, nothing to send
            self.producer.publish((retry.outbound,))

    def _handlers(self, task: Task, request: Request, outcome: Outcome) -> None:
        try:
            task.call_handlers(request, outcome)
        except Exception as exc:
            logger.exception("handler of %s[%s] failed", task.name, request.id or "")
            self.hooks.after_internal_error(request, exc)

    @staticmethod
    def _log(request: Request, outcome: Outcome) -> None:
        if outcome.state == SUCCESS:
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "Task %s[%s] succeeded in %.6fs: %.200r",
                    request.task,
                    request.id,
                    outcome.runtime,
                    outcome.result,
                )
        elif outcome.state == FAILURE:
            logger.error(
                "Task %s[%s] raised %r\n%s", request.task, request.id, outcome.exc, outcome.traceback
            )
        elif outcome.state == RETRY:
            logger.info(
                "Task %s[%s] retry %d: %r", request.task, request.id, request.retries + 1, outcome.exc
            )
        elif outcome.state == IGNORED:  # Celery's line: nothing else says the task chose not to finish
            logger.info("Task %s[%s] ignored", request.task, request.id)

    def _settle(
        self, delivery: Delivery, request: Request, policy: TaskPolicy, outcome: Outcome
    ) -> Settlement:
        if outcome.state == REJECTED:
            reject = outcome.exc  # late ack only: under early ack a Reject is a FAILURE (_body)
            assert isinstance(reject, Reject)
            if reject.requeue:
                # the broker would dead-letter it too; here the log and the result say why
                refusal = self.broker.requeue_refusal(delivery)
                return Settlement(REQUEUE) if refusal is None else Settlement(DEAD, refusal)
            return Settlement(DEAD, f"rejected by the task: {reject.reason}")
        if outcome.state == FAILURE and policy.acks_late and not policy.acks_on_failure:
            return Settlement(DEAD, f"task raised {outcome.exc!r}")
        return _ACK

    def admit(self, message: TaskMessage, request: Request) -> Admission:
        """May this delivery run now? An early ETA defers it, expiry revokes it, then the hooks."""
        eta = message.eta_timestamp
        if eta is not None and eta > time.time() + ETA_TOLERANCE_S:
            return Admission(DEFER, eta, f"arrived before its ETA {message.eta}")
        if message.expires is not None and datetime.now(UTC) > message.expires:
            return Admission(REVOKE, reason=f"expired at {message.expires.isoformat()}")
        return self.hooks.admit(request)

    def _not_admitted(self, delivery: Delivery, request: Request, admission: Admission) -> str | None:
        """Carry out a defer or revoke; return the state to count (None: not run, not counted)."""
        if admission.verdict == DEFER:
            # acked only once the copy is stored: a failed publish leaves this delivery unsettled
            self.producer.defer(delivery, admission.until)
            logger.info("Task %s[%s] deferred: %s", request.task, request.id, admission.reason)
            return None
        logger.warning("Task %s[%s] revoked: %s: not run", request.task, request.id, admission.reason)
        outcome = Outcome(REVOKED, exc=TaskRevokedError(admission.reason))
        self.hooks.after_task(request, outcome)
        return REVOKED

    def _ran_before(self, request: Request) -> bool:
        """Early ack, a message delivered again: did the task already run? Its result says.

        An early-acked message comes back only if its ack was undone (RabbitMQ restarted
        before the ack reached its disk: AMQP does not confirm acks) or it was never started
        (its child died first). A stored ready state tells the two apart, so a task acked
        once does not run twice. Costs one result read, and only for a redelivery.
        """
        backend = self.app.backend
        if backend is None or not request.id:
            return False
        try:
            record = backend.get(request.id)
        except Exception as exc:
            logger.warning(
                "Task %s[%s] delivered again: could not read its result to see whether it "
                "already ran (%r); running it",
                request.task,
                request.id,
                exc,
            )
            return False
        if record is None or record.state not in READY_STATES:
            return False
        logger.warning(
            "Task %s[%s] delivered again but not run: its result is already %s (its early ack "
            "was undone, e.g. by a broker restart), and early ack runs a task at most once",
            request.task,
            request.id,
            record.state,
        )
        return True

    def _start(self, delivery: Delivery, request: Request) -> bool:
        """The early ack. False: this node lost the message's lease (it stalled longer than
        ``broker_lease_timeout``, and another node takes the message over), so it must not run
        here. A broker error raises :class:`NotStarted`."""
        try:
            lost = self.broker.mark_started([delivery])
        except BrokerError as exc:
            if self.slot is not None:
                self.slot.abandon()
            raise NotStarted(str(exc)) from exc
        if not lost:
            return True
        if self.slot is not None:
            self.slot.abandon()
        logger.warning(
            "Task %s[%s] not run: this worker lost the lease of its message (it was held up "
            "longer than broker_lease_timeout), so another node takes the message over",
            request.task,
            request.id,
        )
        return False

    # -- the whole thing --------------------------------------------------------------------

    def execute(self, delivery: Delivery) -> Executed:
        """Handle one delivery; the record says what is left to do and what ran."""
        resolved = self._resolve(delivery)
        if isinstance(resolved, InvalidMessage):
            settled = self.dead_letter(delivery, resolved.reason, resolved.task_id, resolved.task_name)
            self.hooks.after_invalid_message(delivery, resolved)
            return Executed(settled)
        message, task = resolved
        name = task.report_name(message)
        policy = self.policy(task)
        request = self._request(message, task, policy, delivery)
        admission = self.admit(message, request)
        if admission is not ADMIT and admission.verdict != RUN:
            return Executed(_ACK, name, self._not_admitted(delivery, request, admission))
        if delivery.deliveries > 1 and not policy.acks_late and self._ran_before(request):
            return Executed(_ACK, name)
        slot = self.slot
        if slot is not None:
            # before the early ack: a child dying from here on is seen running this task
            now = time.monotonic()
            hard, soft = request.timelimit
            slot.start(
                delivery.tag,
                message.id,
                message.task,
                policy.acks_late,
                now,
                now + soft if soft else 0.0,
                now + hard if hard else 0.0,
            )
        if not policy.acks_late and not self._start(delivery, request):
            return Executed(_SETTLED, name)
        outcome = self._call(task, request)
        if slot is not None:
            # early ack: the message is settled, and the result waits for the next batch; until
            # that is written, the slot's ledger is what tells the master the task ended
            unwritten = not (policy.acks_late or request.ignore_result) and outcome.state in READY_STATES
            slot.finish(outcome.state == FAILURE, unwritten)
        self._log(request, outcome)
        settlement = self._settle(delivery, request, policy, outcome)
        if settlement.action == DEAD:
            self.dead_letter(delivery, settlement.reason, message.id, message.task)
            settlement = _SETTLED
        return Executed(settlement, name, outcome.state)
