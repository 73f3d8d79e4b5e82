"""The event pipe from a child to its master: the messages and their wire form.

The master opens one pipe per child before it forks it. The child
(:mod:`celeriac.worker.child`) is the only writer, the master
(:mod:`celeriac.worker.master`) the only reader; nothing travels the other way
(the master talks to a child through signals and its shared-memory slot,
:mod:`celeriac.worker.slots`).

Framing: one JSON object per line, ended by ``\\n``. The object's ``"event"``
member names the kind of message; the other members are the fields of the
dataclass below, under the same names. The master reads whatever the pipe has
and keeps a trailing partial line for the next read, so a message may arrive in
pieces. A line that is not valid JSON, not an object, of an unknown kind, or
with a field missing or of the wrong type is :class:`PipeMessageError`: the
master logs it and reads on.

The messages, in the order a child sends them:

``ready`` (:class:`Ready`)
    Once, when the child has run its start-up hooks and begins to serve:
    ``pid``, and ``setup_s`` (seconds the set-up took). The master counts the
    child as started; one that sends nothing within ``worker_proc_alive_timeout``
    is killed.
``report`` (:class:`Report`)
    Once a second (``REPORT_S``) while the child serves, also when nothing ran
    (then the master knows the child's counts are current, and a queue's rate
    can fall to zero): ``tasks`` (per task name, the memory tally rows of
    :meth:`~celeriac.worker.memory.TaskTally.flush`), ``runs`` (the run counts
    of :meth:`~celeriac.worker.runstats.RunCounts.flush`), ``window`` (the
    prefetch window now) and ``counted_at`` (the wall-clock time of the count:
    every run that finished before it is in this or an earlier report). The
    master adds them to its totals; the monitor turns the counts into rates
    over ``counted_at`` differences, not over the times it happened to sample.
    A child busy with one long task sends nothing until it ends.
``exit`` (:class:`Exit`)
    Once, last, when the child leaves its loop cleanly: ``reason`` (an
    :class:`~celeriac.observe.records.ExitReason` value), ``detail`` (why, in
    words), ``task`` (the last task it ran, or null), ``busy_s`` (seconds spent
    running tasks over its life), and ``tasks``, ``runs`` and ``counted_at`` as
    in ``report`` for what ran since the last one. The master records the reason for the
    child's exit and weighs the cost of recycling it.

A child writes each message with one ``write()`` and ignores a failed one (its
master is gone). A child that dies without an ``exit`` message (killed,
crashed) is judged by its exit status instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from celeriac.errors import ProtocolError
from celeriac.observe.records import ExitReason

__all__ = ["Exit", "Message", "PipeMessageError", "Ready", "Report", "decode", "encode"]


class PipeMessageError(ProtocolError, ValueError):
    """A line on the event pipe is not a message this module knows."""


@dataclass(frozen=True, slots=True)
class Ready:
    """The child is set up and starts to serve."""

    pid: int
    #: seconds from the start of the child's set-up to this message
    setup_s: float


@dataclass(frozen=True, slots=True)
class Report:
    """What the child ran since its last report."""

    #: per task name, a memory tally row (:mod:`celeriac.worker.memory`)
    tasks: dict[str, list[Any]]
    #: ``[queue, name, *counts]`` rows (:mod:`celeriac.worker.runstats`)
    runs: list[list[Any]]
    #: the child's prefetch window now
    window: int
    #: when the child counted (``time.time()``): every run finished before it is reported
    counted_at: float


@dataclass(frozen=True, slots=True)
class Exit:
    """The child left its loop and is about to exit."""

    reason: ExitReason
    detail: str
    #: the name of the last task it ran (None: it ran none)
    task: str | None
    #: seconds spent running tasks over the child's life
    busy_s: float
    tasks: dict[str, list[Any]]
    runs: list[list[Any]]
    counted_at: float


Message = Ready | Report | Exit

_KIND: dict[type[Message], str] = {Ready: "ready", Report: "report", Exit: "exit"}
_NUMBER = (int, float)
_NONE = type(None)


def encode(message: Message) -> bytes:
    """One line of JSON (ending in ``\\n``) for the pipe."""
    fields: dict[str, Any] = {"event": _KIND[type(message)]}
    for name in message.__match_args__:
        fields[name] = getattr(message, name)
    return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)


def _field(event: dict[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    try:
        value = event[name]
    except KeyError:
        raise PipeMessageError(f"{event['event']!r} message without {name!r}") from None
    if not isinstance(value, types) or (isinstance(value, bool) and bool is not types):
        raise PipeMessageError(f"{event['event']!r} message: {name!r} is {type(value).__name__}")
    return value


def _ready(event: dict[str, Any]) -> Ready:
    return Ready(_field(event, "pid", int), float(_field(event, "setup_s", _NUMBER)))


def _report(event: dict[str, Any]) -> Report:
    return Report(
        _field(event, "tasks", dict),
        _field(event, "runs", list),
        _field(event, "window", int),
        float(_field(event, "counted_at", _NUMBER)),
    )


def _exit(event: dict[str, Any]) -> Exit:
    reason = _field(event, "reason", str)
    try:
        reason = ExitReason(reason)
    except ValueError:
        raise PipeMessageError(f"'exit' message with unknown reason {reason!r}") from None
    return Exit(
        reason,
        _field(event, "detail", str),
        _field(event, "task", (str, _NONE)),
        float(_field(event, "busy_s", _NUMBER)),
        _field(event, "tasks", dict),
        _field(event, "runs", list),
        float(_field(event, "counted_at", _NUMBER)),
    )


_DECODERS = {"ready": _ready, "report": _report, "exit": _exit}


def decode(line: bytes) -> Message:
    """The message on one line of the pipe (without or with its ``\\n``).

    Raises :class:`PipeMessageError` for anything but a message :func:`encode` could write.
    """
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise PipeMessageError(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise PipeMessageError(f"not a JSON object but {type(event).__name__}")
    kind = event.get("event")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise PipeMessageError(f"unknown kind of message {kind!r}")
    return decoder(event)
