"""The fault-injection proxy (chaos/proxy.py): it forwards, and freezes, resets and refuses on demand."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.ports import free_ports
from chaos.proxy import Proxy
from tests.process.harness import wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(30)]


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # the proxy's reset() reaches this side too
            while data := self.request.recv(65536):
                self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """An echo server on a loopback port, in threads of this process."""
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def proxy(echo) -> Iterator[Proxy]:
    proxy = Proxy(*echo).start()
    yield proxy
    proxy.stop()
    assert proxy.errors == []


def _connect(proxy: Proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=10)


def _receive(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def test_forwards_many_small_messages_on_several_connections_and_a_large_one(proxy):
    def talk(index: int, replies: list[bytes]) -> None:
        with _connect(proxy) as sock:
            for n in range(500):
                message = f"{index}:{n};".encode()
                sock.sendall(message)
                replies.append(_receive(sock, len(message)))

    replies: list[list[bytes]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=talk, args=(i, replies[i])) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert replies == [[f"{i}:{n};".encode() for n in range(500)] for i in range(4)]

    # more than the kernel buffers hold: the proxy buffers and stops reading while the echo catches up
    large = os.urandom(8 * 1024 * 1024)
    with _connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(large,))
        sender.start()
        assert _receive(sock, len(large)) == large
        sender.join(10)
        # a half-close passes through: the echo server sees end of file and closes, and so does the proxy
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""
    assert proxy.connections_total == 5
    wait_until(lambda: proxy.open_connections == 0, 5, "the proxy to close the finished connections")


def test_freeze_holds_data_both_ways_then_forwards_it_all(proxy):
    with _connect(proxy) as open_before:
        open_before.sendall(b"before")
        assert _receive(open_before, 6) == b"before"

        began = time.monotonic()
        proxy.freeze(0.6)
        open_before.sendall(b"held")
        with _connect(proxy) as opened_during:  # still accepted while frozen
            opened_during.sendall(b"new")
            assert _receive(open_before, 4) == b"held"
            assert time.monotonic() - began >= 0.6
            assert _receive(opened_during, 3) == b"new"
    assert proxy.connections_total == 2


def test_thaw_ends_a_freeze_early(proxy):
    with _connect(proxy) as sock:
        proxy.freeze(60)
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(4)
        sock.settimeout(10)
        proxy.thaw()
        assert _receive(sock, 4) == b"held"


def test_reset_aborts_a_live_redis_connection_on_both_sides_and_a_new_one_works(redis_url):
    target = urlsplit(redis_url)
    key = f"chaos-proxy-{uuid.uuid4().hex[:8]}"
    observer = redis.Redis.from_url(redis_url)

    def on_redis(flags: str = "") -> list[dict]:
        """The proxied client's connections as Redis lists them (with ``flags``, e.g. b: blocked)."""
        return [c for c in observer.client_list() if c["name"] == key and set(flags) <= set(c["flags"])]

    with Proxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy, ThreadPoolExecutor(1) as pool:
        client = redis.Redis.from_url(proxy.url_for(redis_url), retry=Retry(NoBackoff(), 0), client_name=key)
        try:
            client.set(key + ":kept", "yes")
            waiting = pool.submit(client.blpop, [key], 20)
            wait_until(lambda: on_redis("b"), 5, "the BLPOP to reach Redis")
            assert proxy.reset() == 1
            with pytest.raises(redis.ConnectionError):
                waiting.result(timeout=5)
            wait_until(lambda: not on_redis(), 5, "Redis to drop the reset connection")
            assert client.get(key + ":kept") == b"yes"  # redis-py connects again, through the proxy
            assert (proxy.resets, proxy.connections_total) == (1, 2)
        finally:
            client.close()
            observer.delete(key + ":kept")
            observer.close()
        assert proxy.errors == []


def test_refuse_refuses_new_connections_for_a_while_and_keeps_open_ones(proxy):
    with _connect(proxy) as sock:
        began = time.monotonic()
        proxy.refuse(0.5)
        with pytest.raises(ConnectionRefusedError):
            _connect(proxy)
        sock.sendall(b"still open")
        assert _receive(sock, 10) == b"still open"

        def accepted() -> bool:
            try:
                _connect(proxy).close()
            except ConnectionRefusedError:
                return False
            return True

        wait_until(accepted, 5, "the proxy to accept again")
        assert time.monotonic() - began >= 0.5
    wait_until(lambda: proxy.connections_total == 2, 5, "the proxy to accept the second connection")


def test_an_unreachable_target_resets_the_client():
    (nothing_there,) = free_ports()
    with Proxy("127.0.0.1", nothing_there) as proxy:
        # the reset may come before the client's connect() returns, or on its first read
        with pytest.raises(ConnectionResetError), _connect(proxy) as sock:
            sock.recv(1)
        assert proxy.errors == []


def test_stop_closes_every_socket_and_ends_the_thread(echo):
    fds_before = len(os.listdir("/proc/self/fd"))
    proxy = Proxy(*echo).start()
    clients = [_connect(proxy) for _ in range(3)]
    for sock in clients:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
    proxy.freeze(60)  # and one accepted while frozen, not yet connected upstream
    clients.append(_connect(proxy))
    wait_until(lambda: proxy.connections_total == 4, 5, "the proxy to accept the fourth connection")
    proxy.stop()
    for sock in clients:
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
        sock.close()
    # the proxy's thread is gone (the echo server's handlers end on their own, later)
    assert not [t for t in threading.enumerate() if t.name.startswith("chaos-proxy")]
    # the echo server's handler threads close their ends when they see the reset
    wait_until(lambda: len(os.listdir("/proc/self/fd")) <= fds_before, 5, "every socket to be closed")
    assert proxy.errors == []
    with pytest.raises(RuntimeError):
        proxy.freeze(1)


def test_url_for_points_a_broker_url_at_the_proxy():
    proxy = Proxy("127.0.0.1", 5672)
    try:
        port = proxy.port
        assert (
            proxy.url_for("amqp://guest:guest@127.0.0.1:5672//") == f"amqp://guest:guest@127.0.0.1:{port}//"
        )
        assert proxy.url_for("amqp://localhost/vhost") == f"amqp://127.0.0.1:{port}/vhost"
        with pytest.raises(ValueError):
            proxy.url_for("redis://:secret@127.0.0.1:6379/0")
    finally:
        proxy.stop()
    redis_proxy = Proxy("127.0.0.1", 6379)
    try:
        port = redis_proxy.port
        assert (
            redis_proxy.url_for("redis://:secret@127.0.0.1:6379/3") == f"redis://:secret@127.0.0.1:{port}/3"
        )
    finally:
        redis_proxy.stop()
