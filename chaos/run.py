"""One scenario's run: its broker, its workers, its producer, and the faults it injects.

A scenario's ``act`` gets a :class:`Run` and drives it: start nodes (``celeriac worker``
processes in sessions of their own), send tasks (each recorded in the ledger once its
send returned), and hurt things. The runner then waits for the tasks to settle and asks
the checker what happened.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celeriac import Celeriac
from celeriac.errors import BrokerError
from chaos import ledger
from chaos.brokers import Setup

if TYPE_CHECKING:
    from chaos.proxy import Proxy
from tests.process.harness import ROOT, Worker, wait_until

#: Every run uses a short lease, so dead and stalled nodes are noticed in seconds.
LEASE = 3.0


class Node(Worker):
    """A ``celeriac worker -A chaos.tasks`` process in a session of its own."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "celeriac", "worker", "-A", "chaos.tasks", "-l", "info", *self.args]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def live_children(self) -> list[int]:
        """Pids of this node's children that still exist."""
        out = []
        for pid in sorted(self.child_pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 0)
                if _state(pid) not in ("Z", "X", None):
                    out.append(pid)
        return out


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


class Run:
    """The handle a scenario drives; made by the runner, one per scenario, broker and ack mode."""

    def __init__(self, name: str, setup: Setup, acks: str, directory: Path) -> None:
        self.name, self.setup, self.broker, self.acks = name, setup, setup.name, acks
        self.directory = directory
        self.queue = f"chaos-{name}-{acks}"
        self.ledger = directory / "ledger.log"
        self.env = {
            **os.environ,
            **setup.env(directory),
            "CHAOS_LEDGER": str(self.ledger),
            "CELERIAC_TASK_DEFAULT_QUEUE": self.queue,
            "CELERIAC_TASK_ACKS_LATE": "true" if acks == "late" else "false",
            "CELERIAC_BROKER_LEASE_TIMEOUT": str(LEASE),
            "CELERIAC_WORKER_STATS_INTERVAL": "0.5",
            "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
        }
        self.nodes: list[Node] = []
        self.ids: list[str] = []
        self.notes: list[str] = []
        self.dead_letters_expected = 0
        self._proxies: list[Proxy] = []
        self._clusters: list[Any] = []
        self._app: Celeriac | None = None
        self._threads: list[threading.Thread] = []
        self.random = random.Random(f"{name}-{setup.name}-{acks}")

    # -- the producer ---------------------------------------------------------------------

    @property
    def app(self) -> Celeriac:
        """The producer's app, configured from the same environment as the workers."""
        if self._app is None:
            app = Celeriac(f"chaos-producer-{self.name}")
            app.conf.apply_environment(self.env)
            self._app = app
        return self._app

    def send(
        self,
        count: int,
        seconds: float = 0.01,
        task: str = "chaos.work",
        pace: float = 0.0,
        **options: Any,
    ) -> list[str]:
        """Send ``count`` tasks one by one, ``pace`` seconds apart; return their ids.

        A send that returned is written to the ledger as ``sent`` (confirmed), one that
        raised as ``failed``: its outcome is unknown, and it is not sent again.
        """
        args: list[Any] = [] if task == "chaos.poison" else [seconds]
        if task == "chaos.hog":
            args = [options.pop("mib"), seconds]
        sent = []
        for _ in range(count):
            task_id = str(uuid.uuid4())
            try:
                self.app.send_task(task, args=args, task_id=task_id, queue=self.queue, **options)
            except BrokerError:
                ledger.write(self.ledger, "failed", task_id)
            else:
                ledger.write(self.ledger, "sent", task_id)
            self.ids.append(task_id)
            sent.append(task_id)
            if pace:
                time.sleep(pace)
        return sent

    def send_in_background(
        self, count: int, seconds: float = 0.01, pace: float = 0.01, **options: Any
    ) -> None:
        """Keep sending while the scenario injects its faults; the runner waits for it."""
        thread = threading.Thread(target=self.send, args=(count, seconds), kwargs={"pace": pace, **options})
        thread.start()
        self._threads.append(thread)

    def join_senders(self) -> None:
        for thread in self._threads:
            thread.join()

    # -- the workers ----------------------------------------------------------------------

    def node(self, *args: str, concurrency: int = 2, ready: bool = True, **env: str) -> Node:
        """Start a worker node (``-c concurrency``, extra CLI args, extra environment)."""
        node_env = {**self.env, **env}
        node = Node(node_env, ["-c", str(concurrency), "-Q", self.queue, *args]).start()
        self.nodes.append(node)
        if ready:
            node.wait_ready(concurrency, timeout=60)
        return node

    def started(self) -> int:
        return sum(ledger.Entries.read(self.ledger).starts.values())

    def wait_started(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the ledger shows ``count`` task starts in all."""
        wait_until(lambda: self.started() >= count, timeout, f"{count} task starts")

    def kill_child(self, node: Node) -> int | None:
        """SIGKILL one live child of ``node`` (chosen at random); its pid, or None."""
        children = node.live_children()
        if not children:
            return None
        pid = self.random.choice(children)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    def kill_master(self, node: Node) -> None:
        node.send(signal.SIGKILL)

    def kill_node(self, node: Node) -> None:
        """SIGKILL the whole node at once: its master and every child."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        for pid in node.child_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @contextlib.contextmanager
    def stalled(self, node: Node) -> Iterator[None]:
        """SIGSTOP the whole node for the block, then SIGCONT it."""
        os.killpg(node.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGCONT)

    def proxy(self) -> Proxy:
        """A TCP proxy in front of the broker (stopped with the run)."""
        from chaos.proxy import Proxy

        proxy = Proxy(*self.setup.target())
        proxy.start()
        self._proxies.append(proxy)
        return proxy

    def through(self, proxy: Proxy) -> dict[str, str]:
        """Environment overrides that send a node's broker (and Redis result) traffic through ``proxy``."""
        out = {"CELERIAC_BROKER_URL": proxy.url_for(self.env["CELERIAC_BROKER_URL"])}
        backend = self.env.get("CELERIAC_RESULT_BACKEND", "")
        if backend.startswith("redis"):
            out["CELERIAC_RESULT_BACKEND"] = proxy.url_for(backend)
        return out

    def sentinel_cluster(self) -> Any:
        """A private Redis Sentinel cluster (master, replica, three sentinels) this run's
        broker and results go through from now on; stopped with the run."""
        import json

        from chaos.sentinel_cluster import SentinelCluster

        cluster = SentinelCluster(self.directory / "sentinel").start()
        self._clusters.append(cluster)
        options = json.dumps(cluster.transport_options)
        self.env.update(
            CELERIAC_BROKER_URL=cluster.url,
            CELERIAC_RESULT_BACKEND=cluster.url,
            CELERIAC_BROKER_TRANSPORT_OPTIONS=options,
            CELERIAC_RESULT_BACKEND_TRANSPORT_OPTIONS=options,
        )
        if self._app is not None:
            self._app.close()
            self._app = None
        return cluster

    def expect_dead_letters(self, count: int) -> None:
        """The scenario wrote ``count`` messages that must end in the dead letters."""
        self.dead_letters_expected += count

    def note(self, text: str) -> None:
        self.notes.append(text)

    def close(self) -> None:
        self.join_senders()
        for node in self.nodes:
            node.cleanup()
        for proxy in self._proxies:
            proxy.stop()
        for cluster in self._clusters:
            cluster.stop()
        if self._app is not None:
            self._app.close()
