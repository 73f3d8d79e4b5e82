"""Result backends: where task states and return values are kept.

A backend stores one :class:`ResultRecord` per task id (the latest state wins)
and reads it back. Values are encoded with ``result_serializer``; a failure's
exception is stored the way Celery stores it (``exc_type``, ``exc_message``,
``exc_module``) and rebuilt on read without importing anything: a class is
reused only if its module is already imported and it is an exception class,
otherwise an exception class of the same name is made up.
"""

from __future__ import annotations

import abc
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celeriac.errors import ProtocolError
from celeriac.protocol import serializers
from celeriac.states import FAILURE, READY_STATES, RETRY, REVOKED


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """The stored state of one task."""

    task_id: str
    state: str
    result: Any = None
    traceback: str | None = None
    name: str | None = None
    retries: int = 0
    worker: str | None = None
    date_done: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """True once the state will not change any more."""
        return self.state in READY_STATES


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    """Celery's layout of a stored exception."""
    kind = type(exc)
    args: list[Any] = []
    for arg in exc.args:
        try:
            serializers.json_dumps(arg)
            args.append(arg)
        except TypeError:
            args.append(repr(arg))
    return {"exc_type": kind.__qualname__, "exc_message": args, "exc_module": kind.__module__}


_MADE_UP: dict[tuple[str, str], type[Exception]] = {}
#: States whose stored value is an exception.
_EXCEPTION_STATES = frozenset({FAILURE, RETRY, REVOKED})


def exception_from_dict(data: Any) -> BaseException:
    """Rebuild an exception stored by :func:`exception_to_dict` (never imports a module).

    Only ``Exception`` subclasses are reused: a stored ``SystemExit`` or
    ``KeyboardInterrupt`` comes back as a made-up ``Exception`` of that name, so
    ``result.get()`` never exits the caller.
    """
    if not isinstance(data, dict) or "exc_type" not in data:
        return Exception(data)
    module_name = str(data.get("exc_module") or "builtins")
    type_name = str(data["exc_type"])
    message = data.get("exc_message", ())
    args = tuple(message) if isinstance(message, list | tuple) else (message,)
    cls: Any = sys.modules.get(module_name)
    for part in type_name.split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        key = (module_name, type_name)
        if key not in _MADE_UP:
            _MADE_UP[key] = type(type_name.rsplit(".", 1)[-1], (Exception,), {"__module__": module_name})
        cls = _MADE_UP[key]
    try:
        return cls(*args)
    except Exception:
        return Exception(*args)


@dataclass(frozen=True, slots=True)
class PendingResult:
    """A state to store; built by the worker, written in batches."""

    task_id: str
    state: str
    result: Any = None
    traceback: str | None = None
    name: str | None = None
    retries: int = 0
    worker: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class ResultBackend(abc.ABC):
    """Stores and reads task results; subclasses implement storage."""

    def __init__(
        self,
        url: str,
        serializer: str = "json",
        accept: Sequence[str] = ("json",),
        expires: float | None = 86400.0,
    ) -> None:
        self.url = url
        self.serializer = serializers.get(serializer)
        self.accept = serializers.accepted(accept)
        self.expires = expires

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, item: PendingResult) -> tuple[str, bytes]:
        """Encode the value of ``item`` (an exception for FAILURE and RETRY)."""
        value = item.result
        if item.state in _EXCEPTION_STATES and isinstance(value, BaseException):
            value = exception_to_dict(value)
        try:
            raw = serializers.dumps({"result": value, "meta": item.meta}, self.serializer)
        except ProtocolError as exc:
            note = (
                f"result of {item.name}[{item.task_id}] cannot be stored with {self.serializer.name}: {exc}"
            )
            raw = serializers.dumps(
                {
                    "result": {
                        "exc_type": "EncodeError",
                        "exc_message": [note],
                        "exc_module": "celeriac.errors",
                    },
                    "meta": {},
                },
                self.serializer,
            )
        return self.serializer.content_type, raw

    def decode(
        self, task_id: str, state: str, content_type: str, raw: bytes | None, **fields: Any
    ) -> ResultRecord:
        """Decode a stored row into a :class:`ResultRecord`."""
        value: Any = None
        meta: dict[str, Any] = {}
        if raw is not None:
            payload = serializers.loads(bytes(raw), content_type, self.accept)
            value, meta = payload.get("result"), payload.get("meta") or {}
        if state in _EXCEPTION_STATES:
            value = exception_from_dict(value)
        return ResultRecord(task_id, state, value, meta=meta, **fields)

    # -- storage ----------------------------------------------------------------------------

    def store(self, item: PendingResult) -> None:
        """Store one state."""
        self.store_many([item])

    @abc.abstractmethod
    def store_many(self, items: Sequence[PendingResult]) -> None:
        """Store several states in one write."""

    @abc.abstractmethod
    def get(self, task_id: str) -> ResultRecord | None:
        """The stored state of ``task_id``, or None (PENDING: unknown or not started)."""

    def chord_size(self, group_id: str) -> int | None:
        """The header size a Celery producer stored for chord ``group_id`` outside its messages
        (Celery's Redis backend does), or None."""
        return None

    @abc.abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete the stored state of ``task_id``."""

    @abc.abstractmethod
    def cleanup(self) -> int:
        """Delete results older than ``result_expires``; return how many."""

    def _change_token(self) -> Any:
        """A mark of the store's state, taken before a read, that :meth:`_wait_for_change` compares
        against: a change made between the read and the wait is then not missed."""
        return None

    def _wait_for_change(self, token: Any, until: float) -> None:
        """Block until the store may have changed since ``token`` was taken, or ``until`` (monotonic)."""
        time.sleep(max(0.0, min(0.05, until - time.monotonic())))

    def wait(self, task_id: str, timeout: float | None) -> ResultRecord | None:
        """Wait until ``task_id`` is ready; return its record, or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            token = self._change_token()
            record = self.get(task_id)
            if record is not None and record.ready:
                return record
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            self._wait_for_change(token, now + 1.0 if deadline is None else deadline)

    def close(self) -> None:
        """Release connections."""
