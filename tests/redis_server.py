"""Real Redis servers for tests: the one on 127.0.0.1:6379, or a private one.

``shared_redis_url()`` answers the URL of a Redis that tests may share (each
test uses its own key prefix): the server on the standard port if one answers,
else a private ``redis-server`` started from PATH for the session. Where neither
is possible the tests skip, except with ``CI=true``, where they fail.

:class:`RedisServer` starts a private server on a free port in a directory of
its own (tests that restart or kill Redis use one, never the shared server) and
stops it by pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

STANDARD = ("127.0.0.1", 6379)


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(reason: str) -> None:
    """Skip, or fail under CI where Redis must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Redis is required under CI=true: {reason}")
    pytest.skip(reason)


class RedisServer:
    """A private redis-server: ``start``, ``stop`` (SHUTDOWN, or SIGKILL), ``restart``."""

    def __init__(self, directory: Path, appendonly: bool = False) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not on PATH (apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        args += ["--appendfsync", "always", "--logfile", str(self.directory / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                unavailable(f"a private redis-server did not start: {log}")
            time.sleep(0.02)
        return self

    def stop(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop (Redis writes its append-only file on SIGTERM) and start on the same port."""
        self.stop()
        self.start()


def shared_redis_url(tmp_root: Path) -> tuple[str, RedisServer | None]:
    """The URL of a Redis tests may share, and the private server started for it (if any)."""
    if _answers(*STANDARD):
        return "redis://127.0.0.1:6379/0", None
    server = RedisServer(tmp_root / "shared-redis").start()
    return server.url, server


def kill_when_blocked(client: Any, client_id: int, timeout: float = 10.0) -> bool:
    """Kill the connection ``client_id`` (``CLIENT KILL ID``) as soon as Redis reports it
    waiting in a blocking command; False if it never did within ``timeout``.

    Redis offers nothing to wait on here, so this asks ``CLIENT LIST`` until the
    blocked flag shows; the loop ends as soon as the command is underway.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clients = client.client_list(client_id=[client_id])
        if clients and "b" in clients[0]["flags"]:
            client.client_kill_filter(_id=client_id)
            return True
    return False
