"""Redis result backend in Celery's key layout: Celery clients and celeriac read each other's results.

One string key per task, ``celery-task-meta-<task_id>``, holding the serialized
meta document Celery's Redis backend writes::

    {"status": "SUCCESS", "result": 4, "traceback": null, "children": null,
     "date_done": "2025-01-31T12:00:00.123456+00:00", "name": "proj.add",
     "args": null, "kwargs": null, "worker": "node@host/4242", "retries": 0,
     "queue": null, "task_id": "..."}

* ``date_done`` is an ISO 8601 UTC time for finished states (SUCCESS, FAILURE,
  REVOKED) and null otherwise, as Celery writes it.
* A failure (and RETRY, REVOKED) stores ``{"exc_type", "exc_message", "exc_module"}``.
* Progress metadata (``PendingResult.meta``, e.g. STARTED's pid and hostname) is
  stored as ``result``, the way Celery stores ``update_state(meta=...)``; on
  reading, a dict ``result`` of an unfinished state (neither ready nor RETRY)
  becomes ``ResultRecord.meta``.
* The extended fields (``name``, ``args``, ``kwargs``, ``worker``, ``retries``,
  ``queue``) are always written; what celeriac does not know is null.
* Keys expire after ``result_expires`` seconds (``SET ... EX``; None or 0 keeps
  them), so :meth:`RedisResultBackend.cleanup` has nothing to do.
* Every write is followed by ``PUBLISH <key> <document>``: Celery's result
  consumers and celeriac's :meth:`RedisResultBackend.wait` wake on it.
* A SUCCESS stands: a write over a key whose document says SUCCESS is skipped
  (a re-run's STARTED or FAILURE must not replace a task's result), in one script
  with the write and the publish (:data:`_STORE`).

The stored document carries no content type: a reader tells pickle (first byte
``0x80``) from JSON by looking, and refuses pickle unless it is accepted.

Behind Redis Sentinel (``result_backend = "sentinel://host:26379/0;..."``) the
master's name and the sentinels' options come from
``result_backend_transport_options`` (``master_name``, ``sentinel_kwargs``,
``min_other_sentinels``; see :mod:`celeriac.brokers.redis.sentinel`), as in Celery.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from celeriac.brokers.redis.connection import RedisConnector
from celeriac.brokers.redis.sentinel import OPTION_NAMES as SENTINEL_OPTIONS
from celeriac.errors import ConfigurationError, DecodeError, ProtocolError
from celeriac.protocol import serializers
from celeriac.results.base import (
    _EXCEPTION_STATES,
    PendingResult,
    ResultBackend,
    ResultRecord,
    exception_from_dict,
    exception_to_dict,
)
from celeriac.states import PENDING, READY_STATES

#: Store one result unless its key already holds a SUCCESS; then publish it. KEYS[1]: the
#: result key; ARGV[1]: the document; ARGV[2]: seconds to keep it (0: no expiry). A document
#: that is not JSON (pickle) is replaced. Returns 1 if written, 0 if a success stood.
_STORE = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and doc['status'] == 'SUCCESS' then return 0 end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""

#: Celery's key prefix for task results; the key is also the PUBLISH channel.
TASK_KEY_PREFIX = "celery-task-meta-"
#: Celery's key prefix for group (chord) state.
GROUP_KEY_PREFIX = "celery-taskset-meta-"
#: Celery marks a payload compressed with ``result_compression`` with these bytes.
_CELERY_COMPRESSED = b"\x00celery-compressed\x00"
#: While waiting, the key is read again this often (seconds) in case a
#: notification was lost to a reconnect; notifications normally wake the waiter.
RECHECK_INTERVAL = 1.0
_PICKLE_OPCODE = b"\x80"


def task_key(task_id: str) -> str:
    """The key (and channel) of ``task_id``'s result."""
    if not task_id:
        raise ValueError("a result needs a task id")
    return TASK_KEY_PREFIX + task_id


def _date_done(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class RedisResultBackend(ResultBackend):
    """Results in Redis, one expiring key per task, in Celery's layout."""

    def __init__(
        self,
        url: str,
        serializer: str = "json",
        accept: Sequence[str] = ("json",),
        expires: float | None = 86400.0,
        pool_limit: int | None = 10,
        pool_timeout: float = 10.0,
        options: Mapping[str, Any] | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(url, serializer, accept, expires)
        sentinel = dict(transport_options or {})
        unknown = sorted(set(sentinel) - SENTINEL_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"result_backend_transport_options: {', '.join(map(repr, unknown))} not known to the "
                f"Redis result backend; it takes {', '.join(sorted(SENTINEL_OPTIONS))} (Redis Sentinel)"
            )
        if self.serializer.content_type not in self.accept:
            raise ConfigurationError(
                f"result_serializer={self.serializer.name!r} is not in the accepted content types "
                f"({', '.join(sorted(self.accept))}): results could be written but never read; "
                f"add {self.serializer.name!r} to result_accept_content"
            )
        socket = {"socket_connect_timeout": 4.0, "socket_keepalive": True, **dict(options or {})}
        self.conn = RedisConnector(url, "result_backend", pool_limit, pool_timeout, socket, sentinel)
        # Waiters hold a subscribed connection for as long as they wait: they get a
        # pool of their own so they never starve writers of pooled connections.
        self._subscriber = RedisConnector(url, "result_backend", None, pool_timeout, socket, sentinel)

    # -- encoding ---------------------------------------------------------------------------

    def _document(self, item: PendingResult, value: Any) -> dict[str, Any]:
        ready = item.state in READY_STATES
        return {
            "status": item.state,
            "result": value,
            "traceback": item.traceback,
            "children": None,
            "date_done": datetime.now(UTC).isoformat() if ready else None,
            "name": item.name,
            "args": None,
            "kwargs": None,
            "worker": item.worker,
            "retries": item.retries,
            "queue": None,
            "task_id": item.task_id,
        }

    def encode(self, item: PendingResult) -> tuple[str, bytes]:
        """Celery's meta document for ``item``, serialized.

        A value the serializer cannot encode is replaced by an ``EncodeError``
        exception document (the state is kept), so the result is not lost silently.
        """
        value = item.result
        if item.state in _EXCEPTION_STATES:
            if isinstance(value, BaseException):
                value = exception_to_dict(value)
        elif item.state not in READY_STATES and item.meta:
            value = item.meta
        try:
            raw = serializers.dumps(self._document(item, value), self.serializer)
        except ProtocolError as exc:
            note = (
                f"result of {item.name}[{item.task_id}] cannot be stored with {self.serializer.name}: {exc}"
            )
            error = {"exc_type": "EncodeError", "exc_message": [note], "exc_module": "celeriac.errors"}
            raw = serializers.dumps(self._document(item, error), self.serializer)
        return self.serializer.content_type, raw

    def decode_document(self, task_id: str, raw: bytes) -> ResultRecord:
        """A :class:`ResultRecord` from a stored meta document (celeriac's or Celery's)."""
        raw = bytes(raw)
        if raw.startswith(_CELERY_COMPRESSED):
            raise DecodeError(
                f"the result of {task_id} was compressed by Celery's result_compression, "
                "which celeriac does not read; turn result_compression off"
            )
        content_type = serializers.PICKLE if raw.startswith(_PICKLE_OPCODE) else serializers.JSON
        doc = serializers.loads(raw, content_type, self.accept)
        if not isinstance(doc, dict) or "status" not in doc:
            raise DecodeError(f"the result of {task_id} is not a task meta document")
        state = str(doc["status"] or PENDING)
        value = doc.get("result")
        meta: dict[str, Any] = {}
        if state in _EXCEPTION_STATES:
            if isinstance(value, BaseException):  # Celery with pickle stores the exception itself
                value = value if isinstance(value, Exception) else exception_to_dict(value)
            if not isinstance(value, Exception):
                value = exception_from_dict(value)
        elif state not in READY_STATES and isinstance(value, dict):
            meta, value = value, None
        return ResultRecord(
            task_id,
            state,
            value,
            doc.get("traceback"),
            name=doc.get("name"),
            retries=doc.get("retries") or 0,
            worker=doc.get("worker"),
            date_done=_date_done(doc.get("date_done")),
            meta=meta,
        )

    # -- storage ----------------------------------------------------------------------------

    @property
    def _ex(self) -> int | None:
        """Seconds for ``SET ... EX`` (rounded up); None keeps the key (as Celery does for 0)."""
        if not self.expires or self.expires <= 0:
            return None
        return max(1, math.ceil(self.expires))

    def store_many(self, items: Sequence[PendingResult]) -> None:
        """Write the batch in one pipeline: per item, :data:`_STORE` (``SET key doc [EX]`` then
        ``PUBLISH key doc``, unless the key already holds a SUCCESS)."""
        if not items:
            return
        writes = [(task_key(item.task_id), self.encode(item)[1]) for item in items]
        ex = self._ex or 0

        # _STORE is safe to repeat (a SUCCESS is never overwritten), as run_many asks
        self.conn.run_many(
            f"storing {len(writes)} result(s)", _STORE, [([key], [raw, ex]) for key, raw in writes]
        )

    def get(self, task_id: str) -> ResultRecord | None:
        key = task_key(task_id)
        raw = self.conn.call(f"reading {key}", lambda client: client.get(key))
        return None if raw is None else self.decode_document(task_id, raw)

    def chord_size(self, group_id: str) -> int | None:
        """Celery's producer on a Redis result backend keeps a chord's size in
        ``celery-taskset-meta-<group id>.s`` instead of the body's ``chord_size``."""
        key = f"{GROUP_KEY_PREFIX}{group_id}.s"
        raw = self.conn.call(f"reading {key}", lambda client: client.get(key))
        return int(raw) if raw is not None else None

    def forget(self, task_id: str) -> None:
        key = task_key(task_id)
        self.conn.call(f"deleting {key}", lambda client: client.delete(key))

    def cleanup(self) -> int:
        """Nothing to delete: Redis expires the keys itself."""
        return 0

    def wait(self, task_id: str, timeout: float | None) -> ResultRecord | None:
        """Wait for ``task_id`` to be ready: subscribe to its channel, read the key, wait for a message.

        The subscription is confirmed before the key is read, so a result stored
        in between is never missed. A message carries the document itself.
        """
        record = self.get(task_id)
        if record is not None and record.ready:
            return record
        if timeout is not None and timeout <= 0:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        key = task_key(task_id)
        pubsub = self._subscriber.call("subscribing", lambda client: client.pubsub())
        try:
            self._subscriber.call(f"subscribing to {key}", lambda _: pubsub.subscribe(key))
            if not self._confirmed(pubsub, key, deadline):
                return None
            record = self.get(task_id)
            while record is None or not record.ready:
                remaining = RECHECK_INTERVAL if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return None
                wait = min(remaining, RECHECK_INTERVAL)
                message = self._subscriber.call(
                    f"waiting for {key}",
                    lambda _, wait=wait: pubsub.get_message(ignore_subscribe_messages=True, timeout=wait),
                )
                if message is not None and message.get("type") == "message":
                    record = self.decode_document(task_id, message["data"])
                elif message is None:
                    record = self.get(task_id)
            return record
        finally:
            pubsub.close()

    def _confirmed(self, pubsub: Any, key: str, deadline: float | None) -> bool:
        """Read until Redis confirms the subscription to ``key``; False at ``deadline``."""
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            message = self._subscriber.call(
                f"subscribing to {key}", lambda _, wait=wait: pubsub.get_message(timeout=wait)
            )
            if message is not None and message.get("type") == "subscribe":
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        self.conn.close()
        self._subscriber.close()
