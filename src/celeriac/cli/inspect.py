"""``celeriac inspect`` (and its alias ``status``): queue lengths, dead letters and live worker
nodes; ``inspect memory`` the workers' memory report; ``--watch`` the live view of ``top``."""

from __future__ import annotations

import argparse
import time

import orjson

from celeriac.brokers.base import Broker
from celeriac.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandFactory,
    add_view_arguments,
    app_of,
    write_json,
)
from celeriac.cli.monitor import cmd_top
from celeriac.errors import ConfigurationError
from celeriac.observe.memview import memory_lines
from celeriac.observe.records import WorkerStats


def _node_lines(stats: WorkerStats) -> list[str]:
    age = time.time() - stats.at
    lines = [
        f"  {stats.node} (pid {stats.pid}, {stats.state}, heartbeat {age:.0f} s ago): "
        f"{stats.tasks} tasks, {stats.failed} failed, master {stats.master_rss_kib or 0} KiB, "
        f"queues {', '.join(stats.queues)}"
    ]
    for child in stats.children:
        doing = f"running {child.running} for {child.running_for_s:.1f} s" if child.running else "idle"
        lines.append(
            f"    child {child.index} pid {child.pid}: {child.tasks} tasks, rss {child.rss_kib or 0} KiB, "
            f"uss {child.uss_kib or 0} KiB, {doing}"
        )
    if stats.exits:
        lines.append("    child exits: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.exits.items())))
    pool = stats.broker_pool
    if pool:
        lines.append(
            f"    broker pool: {pool['in_use']} of {pool['limit'] or 'unlimited'} connections in use, "
            f"{pool['waits']} waits (longest {pool['wait_max_s'] * 1000:.1f} ms), {pool['timeouts']} timeouts"
        )
    return lines


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.watch:
        if args.what or args.json:
            raise ConfigurationError(
                "--watch is the live view of queues and workers: drop `memory` and --json"
            )
        return cmd_top(args)
    app = app_of(args)
    broker = app.broker
    if args.what == "memory":
        return _inspect_memory(broker, args.json)
    names = sorted(set(broker.queue_names()) | {q.name for q in app.queues_for(None)})
    lengths = [broker.queue_length(name) for name in names]
    nodes = [WorkerStats.from_json(n.payload) for n in broker.node_stats()]
    dead = broker.dead_letter_count()
    if args.json:
        write_json(
            {
                "queues": [
                    {
                        "queue": q.queue,
                        "ready": q.ready,
                        "scheduled": q.scheduled,
                        "reserved": q.reserved,
                        "running": q.running,
                    }
                    for q in lengths
                ],
                "dead_letters": dead,
                "workers": [orjson.loads(WorkerStats.to_json(n)) for n in nodes],
            }
        )
        return EXIT_OK
    print(f"broker {broker.location}")
    print(f"{'queue':<24} {'ready':>8} {'scheduled':>10} {'reserved':>9} {'running':>8}")
    for q in lengths:
        print(f"{q.queue:<24} {q.ready:>8} {q.scheduled:>10} {q.reserved:>9} {q.running:>8}")
    print(f"dead letters: {dead}" + ("  (celeriac deadletters list)" if dead else ""))
    print(f"workers: {len(nodes)}")
    for node in nodes:
        print("\n".join(_node_lines(node)))
    return EXIT_OK


def _inspect_memory(broker: Broker, as_json: bool) -> int:
    nodes = sorted(
        (WorkerStats.from_json(n.payload) for n in broker.node_stats()), key=lambda node: node.node
    )
    live = [node for node in nodes if node.state == "running"]
    if as_json:
        write_json(
            [
                {
                    "node": node.node,
                    "pid": node.pid,
                    "at": node.at,
                    "master_rss_kib": node.master_rss_kib,
                    "children": node.children,
                    "exits": node.exits,
                    "recent_exits": node.recent_exits,
                    "memory": node.memory,
                }
                for node in live
            ]
        )
        return EXIT_OK
    if not live:
        print("no live worker node (start one with `celeriac worker`)")
        return EXIT_FAILED
    for node in live:
        print("\n".join(memory_lines(node)))
    return EXIT_OK


def add_commands(command: CommandFactory) -> None:
    """Register ``inspect`` and ``status`` (``command`` makes a subparser)."""
    for name in ("inspect", "status"):
        p = command(
            name,
            "Show queue lengths, dead letters and live worker nodes; `inspect memory` shows the "
            "workers' memory: per process, per task name, recycles and child start times; --watch "
            "keeps a live view on screen (as `celeriac top`).",
        )
        p.add_argument(
            "what", nargs="?", choices=("memory",), help="memory: the memory report of each live worker node"
        )
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--watch", action="store_true", help="redraw a live view every --interval (as top)")
        add_view_arguments(p)
        p.set_defaults(func=cmd_inspect, queues=None)
