"""A private, durable redis-server that can be killed -9 and started again on its data.

``RedisNode(directory)`` runs ``redis-server`` on a free loopback port with its
data and log in ``directory``. By default it keeps an append-only file written
with ``appendfsync always`` and no RDB snapshots: every write Redis acknowledged
is in the file before the reply, so it survives ``kill()`` (SIGKILL) and is
loaded again by ``restart()`` on the same port::

    node = RedisNode(tmp / "redis").start()
    try:
        ...  # use node.url
        node.kill()
        node.restart()
    finally:
        node.stop()
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

from chaos.ports import LOOPBACK, free_ports

LOG_NAME = "redis.log"


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis on ``host:port`` answers PING with PONG.

    A server still loading its append-only file answers ``-LOADING`` instead,
    so this is false until the data is back.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisNode:
    """A private redis-server: ``start``, ``kill`` (SIGKILL), ``restart`` (same port and data), ``stop``."""

    def __init__(self, directory: Path, appendonly: bool = True, start_timeout: float = 30.0) -> None:
        self.directory = Path(directory)
        self.appendonly = appendonly
        self.start_timeout = start_timeout
        self.port = free_ports()[0]
        self.proc: subprocess.Popen[bytes] | None = None
        #: how long the last start took, until the server answered PING (seconds)
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        return self.proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (Debian: apt-get install redis-server)")
        args = [binary, "--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.directory)]
        args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"]
        args += ["--daemonize", "no", "--logfile", str(self.directory / LOG_NAME)]
        return args

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.directory / LOG_NAME).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> RedisNode:
        """Start the server and wait until it answers PING (its data loaded); RuntimeError if it does not."""
        if self.running:
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        args = self._command()
        self.directory.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = began + self.start_timeout
        while not answers(LOOPBACK, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{self.log_tail()}")
            time.sleep(0.02)
        self.start_seconds = time.monotonic() - began
        return self

    def _end(self, sig: signal.Signals, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL the server (no shutdown: what survives is what the append-only file holds)."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server if it runs (SIGTERM, then SIGKILL after 10 s); safe to call at any time."""
        self._end(signal.SIGTERM)

    def restart(self) -> None:
        """Kill the server if it still runs, then start it on the same port and directory."""
        self.kill()
        self.start()

    def __enter__(self) -> RedisNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
