"""A private RabbitMQ node that can be killed -9 and started again on its data.

``RabbitNode(directory)`` runs ``rabbitmq-server`` in the foreground, in a
session of its own, beside the system's node (which it never touches): its own
node name (``chaos-<random>@localhost``), a free AMQP port and a free Erlang
distribution port on loopback, and its database, logs, config and (empty)
plugin list under ``directory``. ``kill()`` SIGKILLs the whole node at once, as
a crash or the OOM killer would; ``restart()`` starts it again with the same
name, ports and database, so durable queues and the persistent messages they
held come back::

    node = RabbitNode(tmp / "rabbit").start()
    try:
        ...  # use node.url
        node.kill()
        node.restart()
    finally:
        node.stop()

The Erlang port mapper (``epmd``) is shared with the system node: the private
node registers its name there, and ``kill`` / ``stop`` never end epmd.

Where it runs: the Debian package's ``/usr/sbin/rabbitmq-server`` switches to the
``rabbitmq`` user and its home, so the script it wraps is run instead, as the
caller, which must be able to write ``directory``. The Erlang cookie is made in
``directory`` too (``HOME`` points there). Starting takes several seconds (see
:attr:`RabbitNode.start_seconds`); the wait is up to ``start_timeout`` (90 s).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from chaos.ports import LOOPBACK, free_ports

#: the script Debian's /usr/sbin/rabbitmq-server wraps (that wrapper runs it as the rabbitmq user)
DEBIAN_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
#: AMQP 0-9-1 protocol header; a broker answers it with connection.start.
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
#: the host part of the node name: it must resolve to this machine, as localhost does everywhere
NODE_HOST = "localhost"
OUTPUT_NAME = "server.out"


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an AMQP 0-9-1 broker answers on ``host:port`` (connection.start comes back).

    RabbitMQ opens its AMQP listener last, after it recovered its queues, so a
    node that answers has its durable queues and their messages back.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(PROTOCOL_HEADER)
            return sock.recv(1) == b"\x01"  # a method frame: connection.start
    except OSError:
        return False


def server_binary() -> str:
    """The rabbitmq-server script to run as the caller; RuntimeError if there is none."""
    if DEBIAN_SERVER.exists():
        return str(DEBIAN_SERVER)
    found = shutil.which("rabbitmq-server")
    if found is None:
        raise RuntimeError("rabbitmq-server is not on PATH (Debian: apt-get install rabbitmq-server)")
    return found


class RabbitNode:
    """A private RabbitMQ node: ``start``, ``kill`` (SIGKILL), ``restart`` (same ports and data), ``stop``."""

    def __init__(self, directory: Path, start_timeout: float = 90.0, config: str = "") -> None:
        """``config``: extra lines for the node's ``rabbitmq.conf`` (new-style ``key = value``)."""
        self.directory = Path(directory)
        self.start_timeout = start_timeout
        self.config = config
        self.name = f"chaos-{secrets.token_hex(4)}@{NODE_HOST}"
        self.port, self.dist_port = free_ports(2)
        self.proc: subprocess.Popen[bytes] | None = None
        self._started: list[psutil.Process] = []
        #: how long each start took until the node answered AMQP (seconds), in order
        self.start_seconds: list[float] = []

    @property
    def url(self) -> str:
        """The default vhost as the guest user (who may log in over loopback only)."""
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}//"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The pid of the rabbitmq-server script (the leader of the node's process group) while it runs."""
        return self.proc.pid if self.running else None

    def _write_files(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "enabled_plugins").write_text("[].\n")  # no management plugin, no extra ports
        (self.directory / "rabbitmq-env.conf").write_text("")  # instead of /etc/rabbitmq/rabbitmq-env.conf
        (self.directory / "rabbitmq.conf").write_text(f"log.console = false\n{self.config}\n")

    def _environment(self) -> dict[str, str]:
        """The caller's environment without its RabbitMQ and Erlang settings, plus the node's own."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        base = str(self.directory)
        return {
            **keep,
            "HOME": base,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{base}/mnesia",
            "RABBITMQ_LOG_BASE": f"{base}/log",
            "RABBITMQ_CONFIG_FILE": f"{base}/rabbitmq.conf",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{base}/advanced.config",
            "RABBITMQ_CONF_ENV_FILE": f"{base}/rabbitmq-env.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{base}/enabled_plugins",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            # used only if no epmd runs yet and this node has to start one
            "ERL_EPMD_ADDRESS": LOOPBACK,
        }

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's output and of the node's log, for error messages."""
        parts = []
        for path in (self.directory / OUTPUT_NAME, self.directory / "log" / f"{self.name}.log"):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def start(self) -> RabbitNode:
        """Start the node and wait until it answers AMQP; RuntimeError with the log tail if it does not."""
        if self.running:
            raise RuntimeError(f"the node {self.name} is already running")
        binary = server_binary()
        self._write_files()
        began = time.monotonic()
        with (self.directory / OUTPUT_NAME).open("ab") as output:
            output.write(f"=== start of {self.name} on port {self.port}\n".encode())
            output.flush()
            self.proc = subprocess.Popen(
                [binary],
                cwd=self.directory,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._started = [psutil.Process(self.proc.pid)]
        deadline = began + self.start_timeout
        while not answers(LOOPBACK, self.port):
            self._track()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"RabbitMQ node {self.name} did not start on port {self.port}:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        self._track()
        self.start_seconds.append(time.monotonic() - began)
        return self

    def _track(self) -> None:
        """Remember every process the node started so far: Erlang's port helpers (erl_child_setup,
        inet_gethost) start sessions of their own, outside the node's process group."""
        self._started = [self._started[0], *(p for p in self._started[1:] if p.is_running())]
        known = {proc.pid for proc in self._started}
        with contextlib.suppress(psutil.Error):
            for child in self._started[0].children(recursive=True):
                if child.pid not in known and child.name() != "epmd":
                    self._started.append(child)
                    known.add(child.pid)

    def kill(self) -> None:
        """SIGKILL the whole node at once (the script, the Erlang VM and its helpers; never epmd),
        and wait until every one of its processes is gone."""
        if self.proc is None:
            return
        self._track()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for proc in self._started:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        _gone, alive = psutil.wait_procs(self._started, timeout=30)
        self.proc, self._started = None, []
        if alive:
            raise RuntimeError(f"processes of the RabbitMQ node {self.name} outlived SIGKILL: {alive}")

    def restart(self) -> None:
        """Kill the node if it still runs, then start it with the same name, ports and data."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Kill everything the node started; safe to call at any time (use it in ``finally``)."""
        self.kill()

    def __enter__(self) -> RabbitNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
