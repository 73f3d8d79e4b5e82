"""``celeriac``: command line. Parses arguments, loads the app, hands over; nothing else.

Exit codes: 0 success; 1 the command failed at run time (broker error, a cold
shutdown that cut tasks short); 2 bad usage or configuration (the message says
which argument or setting and how to fix it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from celeriac.app import Celeriac
from celeriac.brokers.base import Broker
from celeriac.errors import CeleriacError, ConfigurationError
from celeriac.observe.memview import memory_lines
from celeriac.observe.records import WorkerStats

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


# -- loading the app --------------------------------------------------------------------------


def _find_app(module: Any, name: str) -> Celeriac:
    for attr in ("app", "celery", "celeriac"):
        candidate = getattr(module, attr, None)
        if isinstance(candidate, Celeriac):
            return candidate
    found = [v for v in vars(module).values() if isinstance(v, Celeriac)]
    if len(found) == 1:
        return found[0]
    if hasattr(module, "__path__"):  # a package: Celery's proj/celery.py convention
        for sub in ("celery", "celeriac"):
            try:
                return _find_app(importlib.import_module(f"{name}.{sub}"), f"{name}.{sub}")
            except (ImportError, ConfigurationError):
                continue
    detail = "several apps; name one with -A module:attribute" if found else "no Celeriac app"
    raise ConfigurationError(f"-A {name}: module {name!r} has {detail}")


def load_app(spec: str | None) -> Celeriac:
    """Import ``module`` or ``module:attribute`` and return the app in it."""
    spec = spec or os.environ.get("CELERIAC_APP")
    if not spec:
        raise ConfigurationError(
            "no app given: pass -A module (the module that creates Celeriac(...)) or set CELERIAC_APP"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"-A {spec}: cannot import {module_name!r}: {exc}") from exc
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, Celeriac):
            raise ConfigurationError(f"-A {spec}: {module_name}.{attr} is not a Celeriac app")
        return app
    return _find_app(module, module_name)


def setup_logging(level: str, fmt: str, logfile: str | None = None) -> None:
    """Log to stderr (or ``logfile``) at ``level`` with ``fmt``."""
    handler: logging.Handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# -- argument types ---------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def _prefetch(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a whole number >= 0 or 'auto'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: use a whole number >= 0 (0 = unlimited) or 'auto'")
    return value


def _queues(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one queue name, e.g. -Q celery,transient")
    return names


def _json(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not JSON: {exc}") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(
                f"{text!r} must be a JSON {'list' if kind is list else 'object'}"
            )
        return value

    return parse


# -- commands ---------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    setup_logging(args.loglevel, app.conf.worker_log_format, args.logfile)
    from celeriac.worker.master import Master
    from celeriac.worker.options import WorkerOptions

    app.import_task_modules()
    options = WorkerOptions.from_app(
        app,
        queues=args.queues,
        concurrency=args.concurrency,
        prefetch_multiplier=args.prefetch_multiplier,
        max_tasks_per_child=args.max_tasks_per_child,
        max_memory_per_child=args.max_memory_per_child,
        max_memory_per_child_hard=args.max_memory_per_child_hard,
        nodename=args.hostname,
    )
    return Master(app, options).run()


def _confirm(prompt: str, force: bool) -> bool:
    if force:
        return True
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "refusing to delete without confirmation on a non-interactive input: pass -f/--force"
        )
    return input(f"{prompt} (yes/NO)? ").strip().lower() in ("y", "yes")


def cmd_purge(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    names = args.queues or [q.name for q in app.queues_for(None)]
    if not _confirm(
        f"This removes every waiting message from {', '.join(names)}; there is no undo", args.force
    ):
        print("Nothing removed.")
        return EXIT_OK
    total = 0
    for name in names:
        removed = app.broker.purge(name)
        total += removed
        print(f"{name}: removed {removed} message(s)")
    print(f"Removed {total} message(s) from {len(names)} queue(s).")
    return EXIT_OK


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
        from celeriac.cli_monitor import cmd_top

        return cmd_top(args)
    app = load_app(args.app)
    broker = app.broker
    if args.what == "memory":
        return _inspect_memory(broker, args.json)
    names = sorted(set(broker.queue_names()) | {q.name for q in app.queues_for(None)})
    lengths = [broker.queue_length(name) for name in names]
    nodes = [WorkerStats.from_json(n.payload) for n in broker.node_stats()]
    dead = broker.dead_letter_count()
    if args.json:
        payload = {
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
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
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
        payload = [
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
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    if not live:
        print("no live worker node (start one with `celeriac worker`)")
        return EXIT_FAILED
    for node in live:
        print("\n".join(memory_lines(node)))
    return EXIT_OK


def cmd_deadletters(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    broker = app.broker
    ids = args.ids or None
    if args.action == "list":
        letters = broker.dead_letters(limit=args.limit, queue=args.queue)
        for letter in letters:
            headers = letter.envelope.headers if isinstance(letter.envelope.headers, dict) else {}
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.failed_at))
            print(
                f"{letter.id}  {when}  queue={letter.queue}  "
                f"task={headers.get('task')}[{headers.get('id')}]  {letter.reason}"
            )
        print(f"{broker.dead_letter_count(args.queue)} dead letter(s)")
        return EXIT_OK
    if args.action == "requeue":
        print(f"requeued {broker.requeue_dead_letters(ids)} message(s)")
        return EXIT_OK
    if not _confirm("This deletes dead letters for good", args.force):
        print("Nothing removed.")
        return EXIT_OK
    print(f"deleted {broker.purge_dead_letters(ids)} dead letter(s)")
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    options: dict[str, Any] = {}
    for key in ("queue", "countdown", "expires", "delivery_mode"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    result = app.send_task(args.name, args.args, args.kwargs, **options)
    print(result.id)
    return EXIT_OK


def cmd_result(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    result = app.AsyncResult(args.task_id)
    if args.timeout is not None:
        try:
            result.get(timeout=args.timeout, propagate=False)
        except CeleriacError as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
    state = result.state
    print(f"{state}: {result.result!r}")
    if result.traceback:
        print(result.traceback)
    return EXIT_OK if state != "FAILURE" else EXIT_FAILED


def cmd_munin(args: argparse.Namespace) -> int:
    from celeriac.observe import munin

    return munin.run(args, load_app)


# -- parser -----------------------------------------------------------------------------------


def _add_inspect_commands(command: Any) -> None:
    from celeriac.cli_monitor import add_view_arguments

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celeriac", description="celeriac: a distributed task queue with Celery's settings and protocol."
    )
    parser.add_argument(
        "--version", action="version", version=f"celeriac {__import__('celeriac').__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, **kw)
        p.add_argument(
            "-A", "--app", help="module (or module:attribute) that creates the app; default $CELERIAC_APP"
        )
        return p

    worker = command("worker", "Run a worker node: a master and prefork child processes.")
    worker.add_argument(
        "-Q",
        "--queues",
        type=_queues,
        help="comma-separated queues to consume (default: every queue in task_queues)",
    )
    worker.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        help="number of child processes (default: worker_concurrency, else CPUs)",
    )
    worker.add_argument(
        "--prefetch-multiplier",
        type=_prefetch,
        help="messages each child fetches at a time: N, 0 (unlimited) or auto",
    )
    worker.add_argument("--max-tasks-per-child", type=_positive_int, help="replace a child after N tasks")
    worker.add_argument(
        "--max-memory-per-child",
        type=_positive_int,
        metavar="KIB",
        help="replace a child after a task when its own memory (USS) exceeds KIB",
    )
    worker.add_argument(
        "--max-memory-per-child-hard",
        type=_positive_int,
        metavar="KIB",
        help="kill a child at once, even mid-task, when its own memory (USS) exceeds KIB",
    )
    worker.add_argument(
        "-n",
        "--hostname",
        help="node name (default celeriac@%%h; %%h host, %%n short host, %%d domain, %%i pid)",
    )
    worker.add_argument(
        "-l",
        "--loglevel",
        default="warning",
        type=str.lower,
        choices=LOG_LEVELS,
        help="log level (default warning; info logs every task)",
    )
    worker.add_argument("--logfile", help="log to this file instead of stderr")
    worker.set_defaults(func=cmd_worker)

    purge = command("purge", "Delete the waiting messages of queues.")
    purge.add_argument(
        "-Q", "--queues", type=_queues, help="queues to purge (default: every queue in task_queues)"
    )
    purge.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=cmd_purge)

    from celeriac.cli_monitor import add_monitor_commands

    _add_inspect_commands(command)

    add_monitor_commands(command, _queues, LOG_LEVELS)

    dead = command("deadletters", "List, requeue or delete messages the workers could not run.")
    dead.add_argument("action", choices=("list", "requeue", "purge"), nargs="?", default="list")
    dead.add_argument("--queue", help="only this queue (list)")
    dead.add_argument("--id", dest="ids", action="append", help="only this dead letter id (repeatable)")
    dead.add_argument("--limit", type=_positive_int, default=50, help="how many to list (default 50)")
    dead.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation (purge)")
    dead.set_defaults(func=cmd_deadletters)

    call = command("call", "Send a task by name and print its id.")
    call.add_argument("name", help="task name, e.g. proj.tasks.add")
    call.add_argument("--args", type=_json(list), default=[], help="positional arguments as a JSON list")
    call.add_argument("--kwargs", type=_json(dict), default={}, help="keyword arguments as a JSON object")
    call.add_argument("--queue")
    call.add_argument("--countdown", type=float)
    call.add_argument("--expires", type=float)
    call.add_argument("--delivery-mode", dest="delivery_mode", choices=("persistent", "transient"))
    call.set_defaults(func=cmd_call)

    result = command("result", "Show the state and result of a task.")
    result.add_argument("task_id")
    result.add_argument("--timeout", type=float, help="wait up to this many seconds for it to finish")
    result.set_defaults(func=cmd_result)

    from celeriac.observe import munin

    munin.add_arguments(
        command(
            "munin",
            "Munin plugin: queue length and oldest message age per queue; `munin install` sets it up.",
            epilog=munin.HELP_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    ).set_defaults(func=cmd_munin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``celeriac`` command."""
    from celeriac.observe.munin import plugin_graph

    graph = plugin_graph(sys.argv[0])  # run by munin-node through a celeriac_<graph> symlink
    if graph is not None:
        argv = ["munin", graph, *(sys.argv[1:] if argv is None else argv)]
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"celeriac {args.command}: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CeleriacError as exc:
        print(f"celeriac {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
