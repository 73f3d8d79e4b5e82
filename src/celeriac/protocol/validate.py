"""Decode and validate an envelope: a :class:`TaskMessage`, or the reason it is not one.

Everything that arrives from a broker passes through :func:`decode`. It never
raises for bad input: a message that cannot be decoded, is too large, uses a
content type that is not accepted or carries malformed headers comes back as an
:class:`InvalidMessage` whose ``reason`` says what was wrong, for the dead-letter
store. The task id and name are kept when they could be read, so the failure can
be recorded against the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celeriac.errors import ProtocolError
from celeriac.protocol import serializers
from celeriac.protocol.message import KNOWN_HEADERS, PERSISTENT, Envelope, TaskMessage


@dataclass(frozen=True, slots=True)
class InvalidMessage:
    """A message that cannot be run, and why."""

    reason: str
    task_id: str | None = None
    task_name: str | None = None


class _Invalid(Exception):
    """Internal: carries a reason out of the nested checks."""


def _optional_str(headers: Mapping[str, Any], key: str) -> str | None:
    value = headers.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _Invalid(f"header {key!r} must be a string or null, got {type(value).__name__}")


def _datetime(headers: Mapping[str, Any], key: str) -> datetime | None:
    value = headers.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"header {key!r} must be an ISO 8601 string or null, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"header {key!r} is not an ISO 8601 date-time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _seconds(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _Invalid(f"{what} must be a non-negative number of seconds or null, got {value!r}")
    return float(value)


def _time_limits(headers: Mapping[str, Any]) -> tuple[float | None, float | None]:
    value = headers.get("timelimit")
    if value is None:
        return None, None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _Invalid(f"header 'timelimit' must be [hard, soft], got {value!r}")
    return _seconds(value[0], "timelimit[0]"), _seconds(value[1], "timelimit[1]")


def _retries(headers: Mapping[str, Any]) -> int:
    value = headers.get("retries", 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(f"header 'retries' must be a non-negative integer, got {value!r}")
    return value


def _body(envelope: Envelope, accept: frozenset[str]) -> tuple[Any, Any, Any]:
    try:
        payload = serializers.loads(envelope.body, envelope.content_type, accept)
    except ProtocolError as exc:
        raise _Invalid(str(exc)) from None
    if isinstance(payload, Mapping) and "task" in payload:
        raise _Invalid(
            "task message protocol v1 is not supported: send with protocol 2 "
            "(Celery's default since 4.0, task_protocol=2)"
        )
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        raise _Invalid("body must be [args, kwargs, embed] (protocol 2)")
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple):
        raise _Invalid(f"task args must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise _Invalid("task kwargs must be an object with string keys")
    if embed is not None and not isinstance(embed, Mapping):
        raise _Invalid(f"body embed must be an object or null, got {type(embed).__name__}")
    return args, kwargs, embed or {}


def _headers(envelope: Envelope) -> tuple[str, str]:
    headers = envelope.headers
    if not isinstance(headers, Mapping):
        raise _Invalid("headers must be a mapping")
    task = headers.get("task")
    if not isinstance(task, str) or not task:
        raise _Invalid("header 'task' (the task name) is missing or not a string")
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise _Invalid("header 'id' (the task id) is missing or not a string")
    return task, task_id


def _build(envelope: Envelope, task: str, task_id: str, accept: frozenset[str]) -> TaskMessage:
    headers = envelope.headers
    properties = envelope.properties
    args, kwargs, embed = _body(envelope, accept)
    hard, soft = _time_limits(headers)
    group_index = headers.get("group_index")
    if group_index is not None and (isinstance(group_index, bool) or not isinstance(group_index, int)):
        raise _Invalid(f"header 'group_index' must be an integer or null, got {group_index!r}")
    priority = properties.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise _Invalid(f"property 'priority' must be an integer, got {priority!r}")
    extra = {k: v for k, v in headers.items() if k not in KNOWN_HEADERS}
    return TaskMessage(
        id=task_id,
        task=task,
        args=args,
        kwargs=kwargs,
        embed=embed,
        retries=_retries(headers),
        eta=_datetime(headers, "eta"),
        expires=_datetime(headers, "expires"),
        time_limit=hard,
        soft_time_limit=soft,
        root_id=_optional_str(headers, "root_id"),
        parent_id=_optional_str(headers, "parent_id"),
        group=_optional_str(headers, "group"),
        group_index=group_index,
        shadow=_optional_str(headers, "shadow"),
        origin=_optional_str(headers, "origin"),
        ignore_result=bool(headers.get("ignore_result", False)),
        reply_to=properties.get("reply_to") or "",
        priority=priority,
        delivery_mode=properties.get("delivery_mode") or PERSISTENT,
        content_type=envelope.content_type,
        extra_headers=extra,
    )


def decode(envelope: Envelope, accept: frozenset[str], max_bytes: int | None) -> TaskMessage | InvalidMessage:
    """Return the task message in ``envelope``, or an :class:`InvalidMessage` saying why not."""
    task: str | None = None
    task_id: str | None = None
    try:
        if max_bytes is not None and envelope.size > max_bytes:
            raise _Invalid(f"message body is {envelope.size} bytes, over task_message_max_bytes={max_bytes}")
        task, task_id = _headers(envelope)
        return _build(envelope, task, task_id, accept)
    except _Invalid as exc:
        if task_id is None and isinstance(envelope.headers, Mapping):
            task_id = _readable(envelope.headers.get("id"))
            task = _readable(envelope.headers.get("task"))
        return InvalidMessage(str(exc), task_id, task)


def _readable(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
