"""RabbitMQ wire format of celeriac: message conversion, the headers celeriac adds, the
names of its own exchanges and queues, and the delay levels of scheduled messages.

A task message is the protocol-v2 body with its headers and properties as AMQP content,
exactly as Celery sends it. celeriac adds a few headers of its own on the way (a delivery
count, a delay level and a due time) and RabbitMQ adds dead-lettering ones; all are
stripped before a delivery reaches the task layer.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from celeriac.brokers.amqp.connection import amqp
from celeriac.protocol.message import Envelope

DEAD_EXCHANGE = DEAD_QUEUE = "celeriac.dead"
DELAY_EXCHANGE = "celeriac.delay"
NODES_QUEUE = "celeriac.nodes"
REGISTRY_QUEUE = "celeriac.queues"
#: Delay levels: a level-k queue holds messages for 2**k ms (32 ms ... about 24.8 days).
MIN_DELAY_LEVEL, MAX_DELAY_LEVEL = 5, 31
#: A message this early for its ETA waits another hop instead of being delivered.
ETA_EARLY_S = 0.001
#: Headers celeriac adds on the wire; stripped before a delivery reaches the task layer.
COUNT_HEADER = "x-celeriac-deliveries"
#: Not "x-" prefixed: a headers exchange ignores binding arguments whose names start with "x-".
LEVEL_HEADER = "celeriac-delay"
ETA_HEADER = "x-celeriac-eta"
_WIRE_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
    COUNT_HEADER,
    LEVEL_HEADER,
    ETA_HEADER,
)
_PROPERTIES = ("correlation_id", "reply_to", "priority", "delivery_mode")

#: A message ready to publish: (message, exchange, routing key, wait for its confirm).
Plan = tuple[Any, str, str, bool]


def until(eta: Any, now: float) -> float:
    """Seconds until an ISO 8601 ``eta`` header (0 when absent, past or unreadable)."""
    if not eta or not isinstance(eta, str):
        return 0.0
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        return 0.0  # the worker reports a bad ETA with the task
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def delay_level(remaining_s: float) -> int:
    """The delay queue for a message due in ``remaining_s``: the longest hop that does
    not pass its ETA (but at least the shortest hop)."""
    ms = max(1.0, remaining_s * 1000.0)
    return min(MAX_DELAY_LEVEL, max(MIN_DELAY_LEVEL, math.floor(math.log2(ms))))


def to_message(
    envelope: Envelope, persistent: bool, priority: int, extra: dict[str, Any] | None = None
) -> Any:
    props = envelope.properties
    kwargs: dict[str, Any] = {
        "content_type": envelope.content_type,
        "content_encoding": envelope.content_encoding,
        "application_headers": {**envelope.headers, **extra} if extra else dict(envelope.headers),
        "delivery_mode": 2 if persistent else 1,
    }
    if props.get("correlation_id"):
        kwargs["correlation_id"] = props["correlation_id"]
    if props.get("reply_to"):
        kwargs["reply_to"] = props["reply_to"]
    if priority:
        kwargs["priority"] = int(priority)
    return amqp.Message(envelope.body, **kwargs)


def from_message(message: Any) -> tuple[Envelope, dict[str, Any]]:
    """The task envelope of a received message, and the headers celeriac put on the wire."""
    body = message.body
    if isinstance(body, str):  # pragma: no cover - channels here never decode
        body = body.encode()
    headers = dict(message.headers or {})
    wire = {name: headers.pop(name) for name in _WIRE_HEADERS if name in headers}
    props = message.properties
    properties = {name: props[name] for name in _PROPERTIES if props.get(name) is not None}
    envelope = Envelope(
        body=bytes(body),
        content_type=str(props.get("content_type") or "application/x-unknown"),
        content_encoding=str(props.get("content_encoding") or "binary"),
        headers=headers,
        properties=properties,
    )
    return envelope, wire


def counted(wire: dict[str, Any]) -> int:
    """Failed deliveries recorded in a received message's count header (0 when none)."""
    value = wire.get(COUNT_HEADER)
    return value if isinstance(value, int) and value >= 0 else 0


def priority_of(message: Any) -> int:
    return int(message.properties.get("priority") or 0)


def is_persistent(message: Any) -> bool:
    return message.properties.get("delivery_mode") == 2
