"""A TCP proxy between clients and a broker that can freeze, reset and refuse connections.

``Proxy(host, port)`` listens on a free loopback port and forwards every
connection to ``host:port``, from one background thread (a ``selectors`` loop,
``TCP_NODELAY`` on both legs, so a busy Redis or AMQP workload pays little
latency). Point the client at :meth:`Proxy.url_for` of the broker URL, then break
the path on purpose:

``freeze(seconds)``
    From now on, for ``seconds``, nothing passes in either direction, on open
    connections and on new ones, which are still accepted (their upstream
    connection is made when the freeze ends). Bytes stay where they are (in the
    proxy or in the kernel's socket buffers), as when a network path blackholes;
    when the freeze ends they are all forwarded. ``thaw()`` ends it early.
``reset()``
    Aborts every open connection at once with an RST (``SO_LINGER`` 0) to the
    client and to the broker.
``refuse(seconds)``
    For ``seconds`` the listening socket is closed, so a new connection is
    refused with an RST as by a port nothing listens on; open connections go on.

Each method returns once the loop has applied it. Connections the broker
closes are closed towards the client (half-closes pass through); a broker that
resets or cannot be reached resets the client. Counters: ``connections_total``
(accepted), ``resets`` (aborted by ``reset()``), ``open_connections``; ``errors``
keeps any unexpected exception the loop met (it never leaves the thread)::

    proxy = Proxy("127.0.0.1", node.port).start()
    try:
        url = proxy.url_for(node.url)
        ...
        proxy.freeze(5)
    finally:
        proxy.stop()
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chaos.ports import LOOPBACK

#: bytes read from a socket at once
READ_SIZE = 256 * 1024
#: a side is not read while this much waits to be written to the other side
HIGH_WATER = 4 * 1024 * 1024
#: how long a caller waits for the loop to apply a fault (seconds)
COMMAND_TIMEOUT = 10.0
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends an RST
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY}
_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}
_WAKE = "wake"
_LISTEN = "listen"


def _nothing() -> None:
    pass


def _nodelay(sock: socket.socket) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Side:
    """One socket of a proxied connection, and the bytes waiting to be written to it."""

    __slots__ = ("connecting", "eof", "mask", "out", "peer", "pipe", "shut", "sock")

    def __init__(self, pipe: _Pipe, sock: socket.socket | None) -> None:
        self.pipe = pipe
        self.sock = sock
        self.peer: _Side = self
        self.out = bytearray()
        self.eof = False  # the socket sent FIN: nothing more to read
        self.shut = False  # its writing half was shut down after the peer's FIN
        self.mask = 0  # events registered with the selector
        self.connecting = False


class _Pipe:
    """A client connection and its upstream connection to the target."""

    __slots__ = ("client", "closed", "upstream")

    def __init__(self, client: socket.socket) -> None:
        self.client = _Side(self, client)
        self.upstream = _Side(self, None)  # connected when not frozen
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.closed = False

    def sides(self) -> tuple[_Side, _Side]:
        return self.client, self.upstream


class _Command:
    __slots__ = ("action", "done", "error", "result")

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Proxy:
    """A TCP proxy on a free loopback port to ``target_host:target_port``, with faults on demand."""

    def __init__(self, target_host: str, target_port: int, host: str = LOOPBACK) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self._listener: socket.socket | None = self._bind(0)
        self.port: int = self._listener.getsockname()[1]
        self.connections_total = 0
        self.resets = 0
        #: unexpected exceptions the loop caught (a connection that fails is not one)
        self.errors: list[BaseException] = []
        self._pipes: set[_Pipe] = set()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._frozen_until: float | None = None
        self._refuse_until: float | None = None
        self._target: tuple[Any, ...] = ()

    # ---- the public face: start, stop, URLs, faults

    @property
    def open_connections(self) -> int:
        return len(self._pipes)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def url_for(self, url: str) -> str:
        """``url`` (a broker URL naming the target) with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        if port != self.target_port:
            raise ValueError(f"{url} does not name port {self.target_port}, where this proxy forwards to")
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{self.host}:{self.port}"))

    def start(self) -> Proxy:
        """Listen and forward from a background thread."""
        if self._thread is not None or self._listener is None:
            raise RuntimeError("a proxy starts once")
        self._target = socket.getaddrinfo(self.target_host, self.target_port, type=socket.SOCK_STREAM)[0]
        self._listener.listen(128)
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTEN)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._thread = threading.Thread(target=self._run, name=f"chaos-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and end the thread; safe to call at any time."""
        thread = self._thread
        if thread is None:
            self._stopping = True
            self._close_everything()
            return
        self._stopping = True
        self._wake()
        thread.join(COMMAND_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"the proxy's thread on port {self.port} did not end")

    def freeze(self, seconds: float) -> None:
        """Forward nothing, in either direction, for ``seconds`` from now; then forward what was held."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._call(lambda: self._freeze(time.monotonic() + seconds))

    def thaw(self) -> None:
        """End a freeze now."""
        self._call(self._thaw)

    def reset(self) -> int:
        """Abort every open connection with an RST on both sides; answers how many there were."""
        return self._call(self._reset)

    def refuse(self, seconds: float) -> None:
        """Refuse new connections (RST) for ``seconds`` from now; open ones are left alone."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._call(lambda: self._refuse(time.monotonic() + seconds))

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- commands: run in the loop's thread, the caller waits

    def _call(self, action: Callable[[], Any]) -> Any:
        if not self.running or self._stopping:
            raise RuntimeError("the proxy is not running")
        command = _Command(action)
        self._commands.put(command)
        self._wake()
        if not command.done.wait(COMMAND_TIMEOUT):
            raise RuntimeError("the proxy's loop did not answer")
        if command.error is not None:
            raise command.error
        return command.result

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (the loop wakes anyway) or closed (it ended)
            self._wake_w.send(b"\0")

    def _run_commands(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                command.result = command.action()
            except Exception as exc:
                command.error = exc
            finally:
                command.done.set()

    # ---- the loop

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._selector.select(self._timeout()):
                    self._dispatch(key, mask)
                self._tick()
        except BaseException as exc:
            self._record(exc)
        finally:
            self._close_everything()

    def _timeout(self) -> float | None:
        deadlines = [t for t in (self._frozen_until, self._refuse_until) if t is not None]
        if not deadlines:
            return None
        return min(3600.0, max(0.0, min(deadlines) - time.monotonic()))  # freeze(math.inf) is allowed

    def _tick(self) -> None:
        now = time.monotonic()
        if self._frozen_until is not None and now >= self._frozen_until:
            self._thaw()
        if self._refuse_until is not None and now >= self._refuse_until:
            self._listen_again()

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data is _WAKE:
            self._run_commands()
        elif key.data is _LISTEN:
            self._accept()
        else:
            # an earlier event of the same round may have frozen the proxy, closed this
            # connection or changed what its socket waits for: only what still holds is done
            side: _Side = key.data
            mask &= side.mask
            if mask and not side.pipe.closed:
                self._guarded(side.pipe, self._ready, side, mask)

    def _guarded(self, pipe: _Pipe, step: Callable[..., None], *args: Any) -> None:
        """Run one step of a connection; a socket error aborts it, anything else is recorded too."""
        try:
            step(*args)
            if not pipe.closed:
                self._settle(pipe)
        except OSError:
            self._abort(pipe)
        except Exception as exc:
            self._record(exc)
            self._abort(pipe)

    def _record(self, exc: BaseException) -> None:
        if len(self.errors) < 100:
            self.errors.append(exc)

    # ---- connections

    def _accept(self) -> None:
        for _ in range(64):
            if self._listener is None:
                return
            try:
                sock, _address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the client gave up before it was accepted
                continue
            pipe = _Pipe(sock)
            self._pipes.add(pipe)
            self.connections_total += 1
            self._guarded(pipe, self._open, pipe)

    def _open(self, pipe: _Pipe) -> None:
        _nodelay(pipe.client.sock)  # type: ignore[arg-type]
        if self._frozen_until is None:
            self._connect(pipe)

    def _connect(self, pipe: _Pipe) -> None:
        family, kind, proto, _name, address = self._target
        sock = socket.socket(family, kind, proto)
        pipe.upstream.sock = sock
        _nodelay(sock)
        code = sock.connect_ex(address)
        if code in _IN_PROGRESS:
            pipe.upstream.connecting = True
        elif code != 0:
            raise OSError(code, os.strerror(code))

    def _ready(self, side: _Side, mask: int) -> None:
        assert side.sock is not None
        if mask & selectors.EVENT_WRITE:
            if side.connecting:
                code = side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                side.connecting = False
            self._flush(side)
        if mask & selectors.EVENT_READ:
            try:
                data = side.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            if data:
                side.peer.out += data
                self._flush(side.peer)
            else:
                side.eof = True

    def _flush(self, side: _Side) -> None:
        if side.out and side.sock is not None and not side.connecting and self._frozen_until is None:
            try:
                sent = side.sock.send(side.out)
            except (BlockingIOError, InterruptedError):
                return
            del side.out[:sent]

    def _settle(self, pipe: _Pipe) -> None:
        """Pass a finished direction's FIN on, close a connection done both ways, update the selector."""
        if self._frozen_until is None:
            for side in pipe.sides():
                if side.peer.eof and not side.out and not side.shut and not side.connecting and side.sock:
                    side.sock.shutdown(socket.SHUT_WR)
                    side.shut = True
            if pipe.client.shut and pipe.upstream.shut:
                self._close(pipe, abort=False)
                return
        for side in pipe.sides():
            self._register(side)

    def _register(self, side: _Side) -> None:
        want = 0
        if side.sock is not None and self._frozen_until is None:
            if side.connecting:
                want = selectors.EVENT_WRITE
            else:
                if not side.eof and len(side.peer.out) < HIGH_WATER:
                    want |= selectors.EVENT_READ
                if side.out:
                    want |= selectors.EVENT_WRITE
        if want == side.mask:
            return
        if side.mask == 0:
            self._selector.register(side.sock, want, side)  # type: ignore[arg-type]
        elif want == 0:
            self._selector.unregister(side.sock)  # type: ignore[arg-type]
        else:
            self._selector.modify(side.sock, want, side)  # type: ignore[arg-type]
        side.mask = want

    def _abort(self, pipe: _Pipe) -> None:
        self._close(pipe, abort=True)

    def _close(self, pipe: _Pipe, abort: bool) -> None:
        pipe.closed = True
        self._pipes.discard(pipe)
        for side in pipe.sides():
            sock, side.sock = side.sock, None
            if sock is None:
                continue
            if side.mask:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(sock)
                side.mask = 0
            if abort:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
            with contextlib.suppress(OSError):
                sock.close()

    # ---- faults, applied in the loop

    def _freeze(self, until: float) -> None:
        self._frozen_until = until
        for pipe in list(self._pipes):
            self._guarded(pipe, _nothing)  # unregisters its sockets: nothing is read or written

    def _thaw(self) -> None:
        if self._frozen_until is None:
            return
        self._frozen_until = None
        for pipe in list(self._pipes):
            self._guarded(pipe, self._resume, pipe)

    def _resume(self, pipe: _Pipe) -> None:
        if pipe.upstream.sock is None:
            self._connect(pipe)
        for side in pipe.sides():
            self._flush(side)

    def _reset(self) -> int:
        pipes = list(self._pipes)
        for pipe in pipes:
            self._abort(pipe)
        self.resets += len(pipes)
        return len(pipes)

    def _refuse(self, until: float) -> None:
        self._refuse_until = until
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(listener)
            listener.close()

    def _listen_again(self) -> None:
        try:
            listener = self._bind(self.port)
            listener.listen(128)
        except OSError as exc:  # the port was taken meanwhile: try again shortly
            self._record(exc)
            self._refuse_until = time.monotonic() + 0.05
            return
        self._refuse_until = None
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, _LISTEN)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _close_everything(self) -> None:
        for pipe in list(self._pipes):
            self._abort(pipe)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._run_commands_after_stop()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run_commands_after_stop(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command.error = RuntimeError("the proxy stopped")
            command.done.set()
