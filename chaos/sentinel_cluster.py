"""A private Redis Sentinel cluster to break on purpose: one master, one replica, three sentinels.

Every process is a ``redis-server`` from PATH, on a free loopback port, in a
directory of its own under the cluster's directory (its log file included), in
a session of its own; :meth:`SentinelCluster.stop` kills each by its pid, so
call it in a ``finally``. The sentinels agree (quorum 2) that the master is
down one second after it stops answering and fail over at once::

    cluster = SentinelCluster(tmp_path / "sentinel")
    try:
        cluster.start()
        app.conf.broker_url = cluster.url
        app.conf.broker_transport_options = cluster.transport_options
        ...
        cluster.kill_master()
        cluster.wait_failover()
        ...
    finally:
        cluster.stop()

Redis and the sentinels are asked with redis-py. Anything that does not start
in time raises :class:`RuntimeError` with the end of the log file that says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.ports import LOOPBACK as HOST
from chaos.ports import free_ports

#: The sentinels' settings: seconds of silence before the master is down, the failover's
#: time limit, and how many sentinels must agree.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2
SENTINELS = 3
START_TIMEOUT_S = 20.0


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError as exc:
        return f"(cannot read {path.name}: {exc})"


@dataclass
class _Node:
    """One process of the cluster."""

    name: str
    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def output(self) -> Path:
        """stdout and stderr: where a server that cannot read its configuration says why."""
        return self.directory / "output.log"

    def tail(self, size: int = 2000) -> str:
        """What the process printed, then the end of its log file."""
        found = [_tail(path, size).strip() for path in (self.output, self.log) if path.exists()]
        return "\n".join(text for text in found if text) or "(nothing printed, no log file)"

    def client(self, timeout: float = 1.0) -> redis.Redis:
        # no retries: a process that is not there is reported at once, and asked again by the caller
        return redis.Redis(
            HOST,
            self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )


class SentinelCluster:
    """One master, one replica and three sentinels on loopback; see the module docstring."""

    def __init__(self, directory: Path, master_name: str = "chaos") -> None:
        self.directory = Path(directory)
        self.master_name = master_name
        self.binary = shutil.which("redis-server")
        self.nodes: list[_Node] = []
        self.sentinels: list[_Node] = []
        self.killed: tuple[str, int] | None = None

    # -- what clients need ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``sentinel://127.0.0.1:<port>/0;...``, one part per sentinel."""
        return ";".join(f"sentinel://{HOST}:{node.port}/0" for node in self.sentinels)

    @property
    def transport_options(self) -> dict[str, Any]:
        """The transport options that go with :attr:`url`."""
        return {"master_name": self.master_name}

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> SentinelCluster:
        """Start the master, the replica and the sentinels; return when the sentinels know
        both Redis servers and each other, and the replica is in sync."""
        if self.binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        ports = free_ports(2 + SENTINELS)
        master = self._node("master", ports[0])
        replica = self._node("replica", ports[1])
        self._spawn(master, self._server_args(master))
        self._spawn(replica, [*self._server_args(replica), "--replicaof", HOST, str(master.port)])
        self._wait(lambda: self._role(master) == "master", master, "the master to answer")
        self._wait(lambda: self._in_sync(master, replica), replica, "the replica to sync with the master")
        for index, port in enumerate(ports[2:]):
            node = self._node(f"sentinel-{index}", port)
            self.sentinels.append(node)
            self._spawn(node, [str(self._sentinel_conf(node, master.port)), "--sentinel"])
        for node in self.sentinels:
            self._wait(lambda node=node: self._knows_all(node), node, f"{node.name} to know the cluster")

    def _node(self, name: str, port: int) -> _Node:
        node = _Node(name, port, self.directory / name)
        node.directory.mkdir(parents=True, exist_ok=True)
        self.nodes.append(node)
        return node

    def _server_args(self, node: _Node) -> list[str]:
        return [
            *("--port", str(node.port), "--bind", HOST, "--dir", str(node.directory)),
            *("--logfile", str(node.log), "--save", "", "--appendonly", "yes", "--appendfsync", "always"),
            # the replica's first sync starts at once (Redis waits 5 s by default)
            *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
        ]

    def _sentinel_conf(self, node: _Node, master_port: int) -> Path:
        """The sentinel's configuration file (the sentinel rewrites it as it learns)."""
        path = node.directory / "sentinel.conf"
        name = self.master_name
        path.write_text(
            f"port {node.port}\n"
            f"bind {HOST}\n"
            f"dir {node.directory}\n"
            f"logfile {node.log}\n"
            f"sentinel monitor {name} {HOST} {master_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        return path

    def _spawn(self, node: _Node, args: list[str]) -> None:
        assert self.binary is not None
        with node.output.open("wb") as output:
            node.proc = subprocess.Popen(
                [self.binary, *args],
                cwd=node.directory,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        """Kill every process this cluster started, by pid (safe to call twice)."""
        for node in self.nodes:
            proc, node.proc = node.proc, None
            if proc is None:
                continue
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state --------------------------------------------------------------------------------

    def master_address(self) -> tuple[str, int]:
        """The master's address, as the first sentinel that answers reports it."""
        errors = []
        for node in self.sentinels:
            try:
                with node.client() as client:
                    host, port = client.sentinel_get_master_addr_by_name(self.master_name)
                return str(host), int(port)
            except (redis.RedisError, TypeError, ValueError) as exc:
                errors.append(f"{node.name}: {exc}")
        raise RuntimeError(f"no sentinel reports the master {self.master_name!r}: {'; '.join(errors)}")

    def kill_master(self) -> tuple[str, int]:
        """SIGKILL the current master; return its address."""
        address = self.master_address()
        node = next((n for n in self.nodes if n.port == address[1] and n.proc is not None), None)
        if node is None or node.proc is None:
            raise RuntimeError(f"the master at {address} is not a process of this cluster")
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait()
        node.proc = None
        self.killed = address
        return address

    def wait_failover(self, timeout: float = 30.0) -> tuple[str, int]:
        """Wait until every sentinel names a new master and it answers as a master; return it.

        Waits on the sentinels' ``+switch-master`` announcement, looking again at least
        every 0.1 s in case it came before the subscription.
        """
        if self.killed is None:
            raise RuntimeError("wait_failover() follows kill_master(): no master was killed")
        deadline = time.monotonic() + timeout
        with self.sentinels[0].client() as client, client.pubsub() as events:
            events.subscribe("+switch-master")
            while True:
                new = self._new_master()
                if new is not None:
                    self.killed = None
                    return new
                if time.monotonic() > deadline:
                    logs = "\n".join(f"--- {n.name}\n{n.tail(800)}" for n in self.sentinels)
                    raise RuntimeError(f"no failover within {timeout} s after killing {self.killed}:\n{logs}")
                with contextlib.suppress(redis.RedisError):
                    events.get_message(timeout=0.1)

    def _new_master(self) -> tuple[str, int] | None:
        """The new master's address once every sentinel names it and it says it is master."""
        named = set()
        for node in self.sentinels:
            try:
                with node.client() as client:
                    host, port = client.sentinel_get_master_addr_by_name(self.master_name)
            except (redis.RedisError, TypeError, ValueError):
                return None
            named.add((str(host), int(port)))
        if len(named) != 1:
            return None
        address = named.pop()
        if address == self.killed:
            return None
        node = next((n for n in self.nodes if n.port == address[1]), None)
        return address if node is not None and self._role(node) == "master" else None

    # -- waiting for a process ----------------------------------------------------------------

    def _wait(self, ready: Callable[[], bool], node: _Node, what: str) -> None:
        """Poll ``ready`` (a server gives nothing to wait on while it starts) until true."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if node.proc is None or node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} (port {node.port}) exited:\n{node.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {START_TIMEOUT_S} s waiting for {what}:\n{node.tail()}")
            time.sleep(0.02)

    @staticmethod
    def _role(node: _Node) -> str:
        try:
            with node.client() as client:
                return str(client.execute_command("ROLE")[0])
        except (redis.RedisError, IndexError):
            return ""

    @staticmethod
    def _in_sync(master: _Node, replica: _Node) -> bool:
        try:
            with replica.client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
            with master.client() as client:
                info = client.info("replication")
        except redis.RedisError:
            return False
        return any(
            isinstance(value, dict) and value.get("port") == replica.port and value.get("state") == "online"
            for key, value in info.items()
            if key.startswith("slave")
        )

    def _knows_all(self, node: _Node) -> bool:
        """The sentinel sees the master as up, the replica, and the other sentinels."""
        try:
            with node.client() as client:
                state = client.sentinel_master(self.master_name)
        except redis.RedisError:
            return False
        return (
            bool(state.get("is_master"))
            and not state.get("is_sdown")
            and int(state.get("num-slaves", 0)) >= 1
            and int(state.get("num-other-sentinels", 0)) >= SENTINELS - 1
        )
