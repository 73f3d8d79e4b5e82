"""The scenarios: a workload, a fault injected into it, and the promise it is held to.

Each ``act`` starts the nodes it needs, sends tasks, injects its fault and returns once
the fault is over and a healthy node is running; the runner then waits for the tasks
to settle. Faults are bounded in time and count and stay on the loopback interface.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos.run import LEASE, Node, Run

ALL = ("sqlite", "redis", "rabbitmq")
NETWORKED = ("redis", "rabbitmq")


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str  # what is done, one line, for the table
    act: Callable[[Run], None]
    brokers: tuple[str, ...] = ALL
    settle: float = 40.0  # seconds the tasks get to settle once the act is over


def _baseline(run: Run) -> None:
    run.node()
    run.send(200, seconds=0.005)


def _child_kill(run: Run) -> None:
    node = run.node()
    run.send_in_background(150, seconds=0.05, pace=0.01)
    run.wait_started(10)
    for _ in range(5):
        run.kill_child(node)
        # the master replaces the child; the next kill hits the new one mid-task
        node.wait_ready(1, timeout=30)
        time.sleep(0.3)


def _mid_run(fault: Callable[[Run, Node], None]) -> Callable[[Run], None]:
    """A node busy with 150 tasks of 50 ms meets ``fault``; a new node takes over after it."""

    def act(run: Run) -> None:
        first = run.node()
        run.send_in_background(150, seconds=0.05, pace=0.01)
        run.wait_started(20)
        fault(run, first)
        run.join_senders()
        run.node()

    return act


def _warm_stop(run: Run, node: Node) -> None:
    node.send(signal.SIGTERM)
    run.note(f"warm shutdown exit code {node.wait_exit(60)}")


def _cold_stop(run: Run, node: Node) -> None:
    node.send(signal.SIGTERM)
    node.send(signal.SIGQUIT)
    run.note(f"cold shutdown exit code {node.wait_exit(60)}")


def _node_stall(run: Run) -> None:
    stalled = run.node()
    run.node()
    run.send_in_background(150, seconds=0.05, pace=0.01)
    run.wait_started(20)
    with run.stalled(stalled):
        time.sleep(LEASE * 2.5)  # the fault is its duration: past the lease
    run.join_senders()


def _broker_kill(run: Run) -> None:
    run.node()
    run.send_in_background(200, seconds=0.02, pace=0.01)
    run.wait_started(30)
    run.setup.kill()
    time.sleep(1.0)  # the broker stays down for a second
    run.setup.restart()
    run.join_senders()


def _net_freeze(run: Run) -> None:
    proxy = run.proxy()
    run.node(**run.through(proxy))
    run.send_in_background(150, seconds=0.02, pace=0.01)
    run.wait_started(20)
    proxy.freeze(20.0)
    time.sleep(20.0)  # the fault is its duration
    run.join_senders()


def _net_reset(run: Run) -> None:
    proxy = run.proxy()
    run.node(**run.through(proxy))
    run.send_in_background(200, seconds=0.02, pace=0.01)
    run.wait_started(20)
    for _ in range(8):
        proxy.reset()
        time.sleep(0.4)
    run.join_senders()


def _bad_input(run: Run) -> None:
    run.node()
    run.send(50, seconds=0.005)
    written = run.setup.garbage(run)
    run.note(f"{written} malformed messages written straight into the queue")
    run.expect_dead_letters(written)
    run.send(50, seconds=0.005)


def _poison(run: Run) -> None:
    run.node(CELERIAC_TASK_DELIVERY_LIMIT="3")
    for _ in range(3):
        run.send(30, seconds=0.01)
        run.send(1, task="chaos.poison")
    run.send(30, seconds=0.01)


def _recycle(run: Run) -> None:
    run.node("--max-tasks-per-child", "7", "--max-memory-per-child", str(60 * 1024))
    for _ in range(4):
        run.send(40, seconds=0.005)
        run.send(2, seconds=0.01, task="chaos.hog", mib=40)


def _eta_beyond_lease(run: Run) -> None:
    first = run.node()
    run.send(40, seconds=0.005, countdown=LEASE * 2)
    run.send(40, seconds=0.005)
    time.sleep(LEASE)  # the node holds the scheduled tasks (or the broker does) past one lease
    run.kill_node(first)
    run.node()


def _failover(run: Run) -> None:
    cluster = run.sentinel_cluster()
    run.node()
    run.send_in_background(200, seconds=0.02, pace=0.01)
    run.wait_started(30)
    cluster.kill_master()
    run.note(f"failed over to {':'.join(map(str, cluster.wait_failover(30)))}")
    run.join_senders()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("baseline", "no fault", _baseline),
    Scenario("child-kill", "SIGKILL a busy child 5 times", _child_kill),
    Scenario("master-kill", "SIGKILL the master mid-run, then start a new node", _mid_run(Run.kill_master)),
    Scenario(
        "node-kill", "SIGKILL master and children at once, then start a new node", _mid_run(Run.kill_node)
    ),
    Scenario("node-stall", f"SIGSTOP one of two nodes for {LEASE * 2.5:g} s (past the lease)", _node_stall),
    Scenario("broker-kill", "kill -9 the broker mid-run, restart it 1 s later", _broker_kill, NETWORKED),
    Scenario("net-freeze", "the network path freezes for 20 s mid-run", _net_freeze, NETWORKED, settle=60.0),
    Scenario("net-reset", "every connection reset 8 times mid-run", _net_reset, NETWORKED),
    Scenario("bad-input", "malformed messages written straight into the queue", _bad_input),
    Scenario("poison", "3 tasks that kill their child, delivery limit 3", _poison),
    Scenario("recycle", "children recycled every 7 tasks and at 60 MiB", _recycle),
    Scenario("warm-shutdown", "SIGTERM mid-run, then start a new node", _mid_run(_warm_stop)),
    Scenario("cold-shutdown", "SIGTERM + SIGQUIT mid-run, then start a new node", _mid_run(_cold_stop)),
    Scenario(
        "sentinel-failover",
        "Redis Sentinel: SIGKILL the master mid-run; a replica takes over",
        _failover,
        ("redis",),
        settle=60.0,
    ),
    Scenario(
        "eta-beyond-lease",
        f"countdown {LEASE * 2:g} s > lease; node killed while it waits",
        _eta_beyond_lease,
    ),
)

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
