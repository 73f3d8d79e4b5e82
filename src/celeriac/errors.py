"""Every exception celeriac raises, under one base class.

::

    CeleriacError
    ├── ConfigurationError          a setting, URL, queue or CLI argument is wrong
    ├── ProtocolError               a message cannot be built or read
    │   ├── ContentDisallowedError  content type not in accept_content (pickle is off by default)
    │   ├── DecodeError             body or headers cannot be decoded
    │   └── MessageTooLargeError    over task_message_max_bytes
    ├── BrokerError                 the broker (or the store beside it) refused or failed
    │   ├── BrokerConnectionError   the broker or store cannot be reached, or the connection broke
    │   ├── QueueNotFoundError      the queue or exchange does not exist (AMQP 404 NOT_FOUND)
    │   ├── QueueMismatchError      a declaration conflicts with the existing queue or exchange
    │   │                           (AMQP 406 PRECONDITION_FAILED)
    │   └── QueueNotAllowedError    the broker does not allow a queue of this kind (RabbitMQ 4.3+
    │                               refuses non-durable shared queues)
    ├── NotRegisteredError          no task of that name in this app
    ├── TimeoutError                AsyncResult.get() waited longer than its timeout
    ├── MaxRetriesExceededError     Task.retry() past max_retries
    ├── TaskRevokedError            the task expired before it could start
    ├── DeadLetteredError           the message went to the dead letters instead of running
    ├── WorkerLostError             the child running the task died (early ack: not redelivered)
    ├── TimeLimitExceeded           the hard time limit killed the child running the task
    ├── SoftTimeLimitExceeded       raised inside the task at the soft time limit
    └── TaskControl                 control flow for task code, not failures:
        ├── Retry                   raised by Task.retry(): the task was sent again
        ├── Reject                  the message goes to dead letters (or back, requeue=True)
        └── Ignore                  the worker acks and records nothing

Every broker turns its driver's exceptions into these at its boundary (chained
with ``from``), so code above ``brokers/`` catches celeriac types only and never
looks at a driver exception or at error text.

The names of the task-facing exceptions are Celery's, so ``except`` clauses
written for Celery keep working after the import line changes.
"""

from __future__ import annotations

import builtins
from typing import Any


class CeleriacError(Exception):
    """Base class of every exception celeriac raises."""


class ConfigurationError(CeleriacError):
    """A setting, URL, queue declaration or command-line argument is invalid."""


class ProtocolError(CeleriacError):
    """A message cannot be encoded or decoded."""


class ContentDisallowedError(ProtocolError):
    """The content type is not in ``accept_content``."""


class DecodeError(ProtocolError):
    """The body or headers of a message cannot be decoded."""


class MessageTooLargeError(ProtocolError):
    """The encoded message is larger than ``task_message_max_bytes``."""


class BrokerError(CeleriacError):
    """The broker, or the store on the broker's or result backend's server, failed an operation."""


class BrokerConnectionError(BrokerError):
    """The broker cannot be reached, or the connection broke or timed out; the operation
    may succeed if retried."""


class QueueNotFoundError(BrokerError):
    """The queue (or exchange) an operation names does not exist on the broker."""


class QueueMismatchError(BrokerError):
    """A declaration conflicts with the queue or exchange of that name that already exists.

    ``kind`` is ``"queue"`` or ``"exchange"``. For a queue argument the broker names,
    ``argument`` is its name, ``declared`` the value this declaration asked for and
    ``existing`` the value of the existing queue (all three None when the broker does
    not say). ``detail`` is the broker's own text.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "queue",
        detail: str = "",
        argument: str | None = None,
        declared: str | None = None,
        existing: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail
        self.argument = argument
        self.declared = declared
        self.existing = existing


class QueueNotAllowedError(BrokerError):
    """The broker does not allow a queue declared this way (RabbitMQ 4.3 and later refuse
    non-durable queues that are not exclusive)."""


class NotRegisteredError(CeleriacError, KeyError):
    """No task of this name is registered with the app."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class TimeoutError(CeleriacError, builtins.TimeoutError):
    """Waiting for a result took longer than the timeout."""


class MaxRetriesExceededError(CeleriacError):
    """``Task.retry()`` was called after ``max_retries`` retries."""


class TaskRevokedError(CeleriacError):
    """The task was not run: it expired before a worker could start it."""


class ChordError(CeleriacError):
    """A member of a chord's header failed, so its body does not run (Celery's name)."""


class DeadLetteredError(CeleriacError):
    """The message was sent to the dead letters (bad message or too many deliveries)."""


class WorkerLostError(CeleriacError):
    """The child process running the task exited before the task finished."""


class TimeLimitExceeded(CeleriacError):
    """The task ran past its hard time limit and its child was killed."""


class SoftTimeLimitExceeded(CeleriacError):
    """Raised inside a task when it reaches its soft time limit."""


class TaskControl(CeleriacError):
    """Base of the exceptions task code raises to steer the worker."""


class Retry(TaskControl):
    """The task will run again (raised by ``Task.retry``).

    ``outbound`` is the next attempt's message and route, built by ``Task.retry``;
    the worker stores RETRY, publishes it and then settles this delivery (a Retry
    raised by hand, without it, stores RETRY and sends nothing).
    """

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: Any = None,
        outbound: Any = None,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.outbound = outbound
        super().__init__(message or f"Retry in {when}: {exc!r}")


class Reject(TaskControl):
    """Reject the message: dead-letter it, or put it back with ``requeue=True``."""

    def __init__(self, reason: str | BaseException | None = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)


class Ignore(TaskControl):
    """Ack the message and record no result state."""


__all__ = [
    "BrokerConnectionError",
    "BrokerError",
    "CeleriacError",
    "ChordError",
    "ConfigurationError",
    "ContentDisallowedError",
    "DeadLetteredError",
    "DecodeError",
    "Ignore",
    "MaxRetriesExceededError",
    "MessageTooLargeError",
    "NotRegisteredError",
    "ProtocolError",
    "QueueMismatchError",
    "QueueNotAllowedError",
    "QueueNotFoundError",
    "Reject",
    "Retry",
    "SoftTimeLimitExceeded",
    "TaskControl",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]
