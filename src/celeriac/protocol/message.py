"""The task message: Celery's protocol v2, and the envelope brokers carry.

A task message travels as an :class:`Envelope`: a body (bytes), headers and
properties. This module is the only code that knows how protocol v2 lays a task
out in them:

headers
    ``lang`` (``"py"``), ``task`` (name), ``id``, ``shadow``, ``eta`` and
    ``expires`` (ISO 8601 or null), ``group``, ``group_index``, ``retries``,
    ``timelimit`` (``[hard, soft]`` in seconds, each may be null), ``root_id``,
    ``parent_id``, ``argsrepr``, ``kwargsrepr``, ``origin``, ``ignore_result``.
    Celery 5.3+ also sends ``replaced_task_nesting``, ``stamped_headers`` and
    ``stamps``; they are kept and passed on like any other header.
properties
    ``correlation_id`` (the task id), ``reply_to``, ``delivery_mode``
    (2 persistent, 1 transient) and ``priority``.
body
    ``[args, kwargs, embed]`` encoded with the content type; ``embed`` holds
    ``callbacks``, ``errbacks``, ``chain`` and ``chord``.

Headers celeriac does not use are kept in ``TaskMessage.extra_headers`` and sent
again on a retry, so stamps and other producers' additions survive.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from celeriac.protocol import serializers

PERSISTENT = 2
TRANSIENT = 1

#: Header names this module reads and writes; anything else is passed through.
KNOWN_HEADERS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
    }
)

_EMPTY_EMBED: Mapping[str, Any] = {
    "callbacks": None,
    "errbacks": None,
    "chain": None,
    "chord": None,
}

_repr = reprlib.Repr()
_repr.maxstring = 256
_repr.maxother = 256
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 16


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a broker stores and delivers: bytes plus framing, never decoded by the broker."""

    body: bytes
    content_type: str
    content_encoding: str
    headers: Mapping[str, Any]
    properties: Mapping[str, Any]

    @property
    def size(self) -> int:
        """Size of the body in bytes (what ``task_message_max_bytes`` limits)."""
        return len(self.body)


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One task invocation, as read from or written to an envelope."""

    id: str
    task: str
    args: tuple[Any, ...] | list[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    embed: Mapping[str, Any] = field(default_factory=lambda: dict(_EMPTY_EMBED))
    retries: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    shadow: str | None = None
    origin: str | None = None
    ignore_result: bool = False
    reply_to: str = ""
    priority: int | None = None
    delivery_mode: int = PERSISTENT
    content_type: str = serializers.JSON
    extra_headers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def eta_timestamp(self) -> float | None:
        """The ETA as a POSIX timestamp, for the broker's schedule."""
        return self.eta.timestamp() if self.eta is not None else None

    def with_changes(self, **changes: Any) -> TaskMessage:
        """Return a copy with some fields replaced (used by retries)."""
        return replace(self, **changes)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def encode(message: TaskMessage) -> Envelope:
    """Lay ``message`` out as a protocol v2 envelope."""
    serializer = serializers.get(message.content_type)
    body = serializers.dumps([list(message.args), dict(message.kwargs), dict(message.embed)], serializer)
    headers = dict(message.extra_headers)
    headers.update(
        lang="py",
        task=message.task,
        id=message.id,
        shadow=message.shadow,
        eta=_iso(message.eta),
        expires=_iso(message.expires),
        group=message.group,
        group_index=message.group_index,
        retries=message.retries,
        timelimit=[message.time_limit, message.soft_time_limit],
        root_id=message.root_id or message.id,
        parent_id=message.parent_id,
        argsrepr=_repr.repr(tuple(message.args)) if message.args else "()",
        kwargsrepr=_repr.repr(dict(message.kwargs)) if message.kwargs else "{}",
        origin=message.origin,
        ignore_result=message.ignore_result,
    )
    properties: dict[str, Any] = {
        "correlation_id": message.id,
        "reply_to": message.reply_to,
        "delivery_mode": message.delivery_mode,
    }
    if message.priority is not None:
        properties["priority"] = message.priority
    return Envelope(
        body=body,
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        headers=headers,
        properties=properties,
    )
