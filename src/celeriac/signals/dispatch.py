"""``Signal``: Celery's observer API (``connect``, ``disconnect``, ``send``), written for celeriac.

A receiver is connected for every sender (``sender=None``) or for one sender: a
string sender (a task name, a node name) matches an equal string, any other
sender matches by identity (a task object). Receivers are held by weak reference
unless ``weak=False``, so a receiver that goes out of scope stops receiving, as in
Celery and Django.

Sending is the hot path and takes no lock: connecting and disconnecting build a new
list of receivers under the lock and swap it in, so a send iterates a list nobody
changes. A signal with no receivers costs one attribute read and a truth test; the
worker and the producer check ``signal.receivers`` before building the arguments.

A receiver that raises is logged with its traceback and its exception becomes its
response; the others still run, and the worker, the task and the send go on.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

logger = logging.getLogger("celeriac.signals")

#: Receiver keys: ``(receiver identity, sender identity)``.
_Key = tuple[Hashable, Hashable]
_ANY_SENDER: Hashable = ("any sender",)
#: ``retry=True`` receivers: the first pause, its growth per failure, and the longest pause (seconds).
RETRY_START_S, RETRY_STEP_S, RETRY_MAX_S = 2.0, 2.0, 30.0


def _sender_key(sender: Any) -> Hashable:
    if sender is None:
        return _ANY_SENDER
    if isinstance(sender, str | bytes):
        return sender  # a task or node name: equal strings match
    return id(sender)


def _receiver_key(receiver: Callable[..., Any]) -> Hashable:
    owner = getattr(receiver, "__self__", None)
    function = getattr(receiver, "__func__", None)
    if owner is not None and function is not None:  # a bound method: a new object at every access
        return (id(owner), id(function))
    return id(receiver)


def _accepts_kwargs(receiver: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): let it through
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _weak(receiver: Callable[..., Any], on_death: Callable[..., None]) -> weakref.ReferenceType[Any]:
    if getattr(receiver, "__self__", None) is not None and hasattr(receiver, "__func__"):
        return weakref.WeakMethod(receiver, on_death)  # type: ignore[arg-type]
    return weakref.ref(receiver, on_death)


def _retrying(receiver: Callable[..., Any]) -> Callable[..., Any]:
    """``receiver`` called again after each exception until it returns (Celery's ``retry=True``)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        pause = RETRY_START_S
        while True:
            try:
                return receiver(*args, **kwargs)
            except Exception as exc:
                logger.error("signal receiver %r raised %r; calling it again in %.0f s", receiver, exc, pause)
                time.sleep(pause)
                pause = min(pause + RETRY_STEP_S, RETRY_MAX_S)

    return call


class Signal:
    """A signal receivers connect to; :meth:`send` calls each with ``signal``, ``sender`` and the
    signal's keyword arguments."""

    def __init__(
        self,
        providing_args: Iterable[str] | None = None,
        use_caching: bool = False,
        name: str | None = None,
    ) -> None:
        self.name = name
        #: the keyword arguments :meth:`send` passes (documentation only, as in Celery)
        self.providing_args: set[str] = set(providing_args or ())
        #: accepted for Celery's signature; sending takes no lock and needs no cache
        self.use_caching = use_caching
        #: ``[(key, receiver or weak reference), ...]``: replaced, never changed in place, by
        #: connect and disconnect; true when anything is connected
        self.receivers: list[tuple[_Key, Any]] = []
        self.lock = threading.Lock()
        self._has_dead = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name} providing_args={self.providing_args!r}>"

    __str__ = __repr__

    # -- connecting -----------------------------------------------------------------------

    def connect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        retry: bool = False,
    ) -> Any:
        """Connect ``receiver`` for ``sender`` (None: every sender); returns the receiver.

        Usable as ``@signal.connect`` and ``@signal.connect(sender=..., weak=...)``. A receiver
        must accept ``**kwargs``. ``dispatch_uid`` makes connecting twice a no-op when the
        receiver object differs (a module imported twice). ``retry=True`` calls a receiver that
        raises again, after a growing pause, until it returns (and holds it strongly).
        """
        if receiver is None:

            def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
                return self.connect(function, sender, weak, dispatch_uid, retry)

            return decorate
        self._connect(receiver, sender, weak, dispatch_uid, retry)
        return receiver

    def _connect(
        self,
        receiver: Callable[..., Any],
        sender: Any,
        weak: bool,
        dispatch_uid: Hashable | None,
        retry: bool,
    ) -> None:
        if not callable(receiver):
            raise TypeError(f"signal {self.name}: receiver {receiver!r} is not callable")
        if not _accepts_kwargs(receiver):
            raise ValueError(
                f"signal {self.name}: receiver {receiver!r} must accept keyword arguments: "
                "add **kwargs to its parameters"
            )
        key = (dispatch_uid if dispatch_uid is not None else _receiver_key(receiver), _sender_key(sender))
        target: Any = receiver
        if retry:
            target = _retrying(receiver)
        elif weak:
            target = _weak(receiver, self._mark_dead)
        with self.lock:
            live = self._live_entries()
            if all(existing != key for existing, _ in live):
                live.append((key, target))
            self.receivers = live

    def disconnect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: Any = None,
        weak: bool | None = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Disconnect ``receiver`` (or the one connected with ``dispatch_uid``) from ``sender``;
        True if it was connected. ``weak`` is accepted and ignored, as in Celery."""
        if dispatch_uid is None and receiver is None:
            raise TypeError(f"signal {self.name}: disconnect needs a receiver or a dispatch_uid")
        key = (
            dispatch_uid if dispatch_uid is not None else _receiver_key(receiver),  # type: ignore[arg-type]
            _sender_key(sender),
        )
        with self.lock:
            live = self._live_entries()
            kept = [entry for entry in live if entry[0] != key]
            self.receivers = kept
        return len(kept) < len(live)

    def _mark_dead(self, _reference: Any = None) -> None:
        # called by the garbage collector, maybe while this thread holds the lock: only a flag
        self._has_dead = True

    def _live_entries(self) -> list[tuple[_Key, Any]]:
        """A copy of the receivers without the collected ones (call with the lock held)."""
        self._has_dead = False
        return [
            entry
            for entry in self.receivers
            if not (isinstance(entry[1], weakref.ReferenceType) and entry[1]() is None)
        ]

    # -- sending --------------------------------------------------------------------------

    def _live_receivers(self, sender: Any) -> list[Callable[..., Any]]:
        if self._has_dead:
            with self.lock:
                self.receivers = self._live_entries()
        wanted = _sender_key(sender)
        found = []
        for (_, sender_key), target in self.receivers:
            if sender_key is _ANY_SENDER or sender_key == wanted:
                receiver = target() if isinstance(target, weakref.ReferenceType) else target
                if receiver is not None:
                    found.append(receiver)
        return found

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a send from ``sender`` would reach any receiver."""
        return bool(self._live_receivers(sender))

    def send(self, sender: Any, **named: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Call every receiver connected for ``sender``; return ``[(receiver, response), ...]``.

        A receiver that raises is logged with its traceback, and its exception is its response.
        """
        if not self.receivers:
            return []
        responses: list[tuple[Callable[..., Any], Any]] = []
        for receiver in self._live_receivers(sender):
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as exc:
                logger.exception("signal %s: receiver %r raised %r", self.name, receiver, exc)
                responses.append((receiver, exc))
            else:
                responses.append((receiver, response))
        return responses

    #: Django's name; celeriac's ``send`` is already robust, as Celery's is.
    send_robust = send


__all__ = ["Signal"]
