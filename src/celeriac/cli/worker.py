"""``celeriac worker`` runs a worker node (a master and its prefork children, or ``-P solo``);
``celeriac purge`` empties the queues it consumes.

The worker takes the flags of Celery's ``celery worker``. Each one does what Celery's does,
or is accepted with a line at start that says what celeriac does instead, or is refused
(exit code 2) with what to use: none is ignored without a word. docs/celery.md ("Commands
and worker flags") has the list.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING

from celeriac import signals
from celeriac.cli.common import (
    EXIT_OK,
    CommandFactory,
    add_log_arguments,
    app_of,
    confirm,
    positive_int,
    prefetch,
    queue_list,
    seconds,
    setup_logging,
)
from celeriac.config import beat_schedule_warning, beat_unsupported
from celeriac.errors import ConfigurationError

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.worker.options import WorkerOptions

logger = logging.getLogger("celeriac.worker")

#: ``-P`` pools celeriac does not have, and what to use instead.
OTHER_POOLS = {
    "threads": "celeriac runs tasks in processes, not threads",
    "gevent": "celeriac has no green-thread pool",
    "eventlet": "celeriac has no green-thread pool",
    "custom": "celeriac has no pluggable pools",
}
BEAT = (
    "an option of the embedded beat (-B), and periodic tasks (beat) are not implemented yet in "
    "celeriac: drop it; until they land keep Celery's beat running on the same broker, or call each "
    "task from cron or a systemd timer with `celeriac call TASK_NAME`"
)
DAEMON = (
    "celeriac does not daemonize itself or switch users: run `celeriac worker` in the foreground under "
    "systemd (User=, Group=, UMask=), supervisord or a container"
)
#: Celery flags that are refused: (argument dest, flag as written, why and what to do instead);
#: ``-B`` too, with the app's schedule named (:func:`celeriac.config.beat_unsupported`).
REFUSED = (
    ("schedule", "-s/--schedule", BEAT),
    ("scheduler", "--scheduler", BEAT),
    ("detach", "-D/--detach", DAEMON),
    ("uid", "--uid", DAEMON),
    ("gid", "--gid", DAEMON),
    ("umask", "--umask", DAEMON),
    ("executable", "--executable", DAEMON),
)
#: Celery flags accepted with no effect: (argument dest, flag as written, why).
NO_OPS = (
    ("without_gossip", "--without-gossip", "celeriac workers do not gossip"),
    ("without_mingle", "--without-mingle", "celeriac workers do not mingle at start"),
    (
        "without_heartbeat",
        "--without-heartbeat",
        "celeriac sends no event heartbeats; its node statistics (celeriac inspect) stay on",
    ),
    (
        "heartbeat_interval",
        "--heartbeat-interval",
        "celeriac sends no event heartbeats; its node statistics follow worker_stats_interval",
    ),
)


def _pool(text: str) -> str:
    """``-P``: prefork (Celery's ``processes`` too) or solo; the other pools are refused."""
    name = text.lower()
    if name in ("prefork", "processes"):
        return "prefork"
    if name == "solo":
        return name
    why = OTHER_POOLS.get(name, "unknown pool")
    raise argparse.ArgumentTypeError(
        f"{text!r}: {why}. Use -P prefork with -c N child processes (I/O-bound tasks can take more "
        "children than CPUs), or -P solo to run tasks one at a time in the worker process"
    )


def _autoscale_error(value: str) -> ConfigurationError:
    sizes = [int(part) for part in value.split(",") if part.strip().isdigit()]
    children = f"-c {max(sizes)}" if sizes else "-c N"
    return ConfigurationError(
        f"--autoscale {value}: autoscaling is not implemented yet: run a fixed pool with {children} "
        "(worker_concurrency); an idle child costs little, and --max-tasks-per-child or "
        "--max-memory-per-child keep children small. Celery's remote pool_grow/pool_shrink are not "
        "implemented either"
    )


def refuse(args: argparse.Namespace) -> None:
    """Raise for the first Celery flag celeriac refuses (before the app is loaded)."""
    for dest, flag, why in REFUSED:
        if getattr(args, dest):
            raise ConfigurationError(f"{flag}: {why}")
    if args.autoscale:
        raise _autoscale_error(args.autoscale)
    if args.disable_prefetch and args.prefetch_multiplier not in (None, 1):
        raise ConfigurationError(
            f"--disable-prefetch and --prefetch-multiplier {args.prefetch_multiplier}: "
            "--disable-prefetch is --prefetch-multiplier 1; give one of them"
        )


def cmd_worker(args: argparse.Namespace) -> int:
    from celeriac.worker.options import WorkerOptions, expand_nodename, node_format

    refuse(args)
    app = app_of(args)
    refusal = beat_unsupported(app) if args.beat else None
    if refusal:
        raise ConfigurationError(refusal)
    nodename = expand_nodename(args.hostname or "celeriac@%h")
    logfile = node_format(args.logfile, nodename, "--logfile") if args.logfile else None
    setup_logging(args.loglevel, app.conf.worker_log_format, logfile, app.conf.worker_task_log_format)
    _apply_settings(app, args)
    app.import_task_modules()
    beat_warning = beat_schedule_warning(app)
    if beat_warning:
        logger.warning("%s", beat_warning)
    # as in Celery, after the task modules (their receivers are connected) and before the
    # options read the settings (a receiver may change them)
    instance = SimpleNamespace(app=app, hostname=nodename)  # what Celery's instance has so far
    options_given = {name: value for name, value in vars(args).items() if name != "func"}
    signals.celeryd_init.send(sender=nodename, instance=instance, conf=app.conf, options=options_given)
    options = WorkerOptions.from_app(
        app,
        queues=args.queues,
        exclude_queues=args.exclude_queues,
        concurrency=args.concurrency,
        prefetch_multiplier=1 if args.disable_prefetch else args.prefetch_multiplier,
        max_tasks_per_child=args.max_tasks_per_child,
        max_memory_per_child=args.max_memory_per_child,
        max_memory_per_child_hard=args.max_memory_per_child_hard,
        nodename=nodename,
        pool=args.pool,
    )
    _say_what_differs(app, args, options)
    with _pidfile(args.pidfile, options.nodename):  # held before --purge deletes anything
        if args.purge:
            _purge_at_start(app, options)
        return _run(app, options)


def _pidfile(path: str | None, nodename: str) -> contextlib.AbstractContextManager[object]:
    from celeriac.worker.options import node_format
    from celeriac.worker.pidfile import Pidfile

    return Pidfile(node_format(path, nodename, "--pidfile")) if path else contextlib.nullcontext()


def _run(app: Celeriac, options: WorkerOptions) -> int:
    from celeriac.worker.master import Master
    from celeriac.worker.solo import SoloMaster

    master = SoloMaster if options.pool == "solo" else Master
    return master(app, options).run()


def _apply_settings(app: Celeriac, args: argparse.Namespace) -> None:
    """Flags that set a setting of this worker's app: time limits, ``-I`` modules."""
    if args.time_limit is not None:
        app.conf.task_time_limit = args.time_limit
    if args.soft_time_limit is not None:
        app.conf.task_soft_time_limit = args.soft_time_limit
    if args.include:
        app.conf.include = (*app.conf.include, *args.include)


def _say_what_differs(app: Celeriac, args: argparse.Namespace, options: WorkerOptions) -> None:
    """One line for each accepted flag that celeriac treats otherwise than Celery."""
    from celeriac.worker.options import SOLO_UNUSED
    from celeriac.worker.prefetch import PrefetchWindow

    for dest, flag, why in NO_OPS:
        if getattr(args, dest):
            logger.info("%s: accepted, nothing to turn off: %s", flag, why)
    if args.optimization == "fair":
        window = PrefetchWindow(options.prefetch_multiplier).describe()
        logger.info(
            "-O fair: each child fetches its own messages (prefetch %s per child), so up to that many "
            "wait behind its running task; --prefetch-multiplier 1 is Celery's fair dispatch (no message "
            "waits behind a busy child), and `auto` sizes the window from task times (1 for long tasks)",
            window,
        )
    if args.task_events:
        logger.warning(
            "-E/--task-events: task events are not implemented yet: this worker sends none, so Flower and "
            "`celery events` see nothing; `celeriac inspect` and `celeriac monitor` read the workers' "
            "heartbeats instead"
        )
    if args.statedb:
        logger.warning(
            "-S/--statedb %s: not used: celeriac keeps no worker state file (revoked ids are not kept "
            "across restarts)",
            args.statedb,
        )
    if options.pool == "solo":
        given = {
            "worker_concurrency": args.concurrency,
            "worker_max_tasks_per_child": args.max_tasks_per_child,
            "worker_max_memory_per_child": args.max_memory_per_child,
            "worker_max_memory_per_child_hard": args.max_memory_per_child_hard,
        }
        unused = [name for name in SOLO_UNUSED if (given[name] or app.conf[name]) is not None]
        if unused:
            logger.warning(
                "-P solo runs one task at a time in this process, which has no children to recycle: "
                "%s do not apply",
                ", ".join(unused),
            )


def _purge_at_start(app: Celeriac, options: WorkerOptions) -> None:
    """``--purge``: empty the queues this worker consumes before it starts, as Celery does."""
    for name in options.queue_names:
        removed = app.broker.purge(name)
        logger.warning("--purge: removed %d waiting message(s) from %s", removed, name)


def cmd_purge(args: argparse.Namespace) -> int:
    app = app_of(args)
    names = args.queues or [q.name for q in app.queues_for(None)]
    if not confirm(
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


def _add_pool_options(worker: argparse.ArgumentParser) -> None:
    pool = worker.add_argument_group("pool")
    pool.add_argument(
        "-P",
        "--pool",
        type=_pool,
        default="prefork",
        help="prefork (default: child processes) or solo (tasks run one at a time in this process, "
        "for debugging); threads, gevent and eventlet are not available",
    )
    pool.add_argument(
        "-c",
        "--concurrency",
        type=positive_int,
        help="number of child processes (default: worker_concurrency, else CPUs)",
    )
    pool.add_argument(
        "--prefetch-multiplier",
        type=prefetch,
        help="messages each child fetches at a time: N, 0 (unlimited) or auto",
    )
    pool.add_argument(
        "--disable-prefetch",
        action="store_true",
        help="fetch one message at a time (--prefetch-multiplier 1)",
    )
    pool.add_argument(
        "-O",
        "--optimization",
        choices=("default", "fair"),
        help="accepted; fair: says how celeriac's per-child prefetch compares (see --prefetch-multiplier)",
    )
    pool.add_argument("--max-tasks-per-child", type=positive_int, help="replace a child after N tasks")
    pool.add_argument(
        "--max-memory-per-child",
        type=positive_int,
        metavar="KIB",
        help="replace a child after a task when its own memory (USS) exceeds KIB",
    )
    pool.add_argument(
        "--max-memory-per-child-hard",
        type=positive_int,
        metavar="KIB",
        help="kill a child at once, even mid-task, when its own memory (USS) exceeds KIB",
    )
    pool.add_argument(
        "--time-limit", type=seconds, metavar="SECONDS", help="hard time limit of tasks (task_time_limit)"
    )
    pool.add_argument(
        "--soft-time-limit",
        type=seconds,
        metavar="SECONDS",
        help="soft time limit of tasks (task_soft_time_limit)",
    )
    pool.add_argument("--autoscale", metavar="MAX,MIN", help="refused: not implemented yet (use -c)")


def _add_queue_options(worker: argparse.ArgumentParser) -> None:
    queues = worker.add_argument_group("queues and modules")
    queues.add_argument(
        "-Q",
        "--queues",
        type=queue_list,
        help="comma-separated queues to consume (default: every queue in task_queues)",
    )
    queues.add_argument(
        "-X", "--exclude-queues", type=queue_list, help="comma-separated queues not to consume"
    )
    queues.add_argument(
        "-I", "--include", type=queue_list, metavar="MODULES", help="comma-separated task modules to import"
    )
    queues.add_argument(
        "--purge",
        "--discard",
        action="store_true",
        help="delete the waiting messages of the consumed queues before starting (no undo)",
    )


def _add_node_options(worker: argparse.ArgumentParser) -> None:
    node = worker.add_argument_group("node")
    node.add_argument(
        "-n",
        "--hostname",
        help="node name (default celeriac@%%h; a name without @ is the host: w1 = celeriac@w1; "
        "%%h host, %%n short host, %%d domain, %%i pid)",
    )
    node.add_argument(
        "--pidfile",
        help="write the node's pid here, refuse to start if a running process holds it, remove it at "
        "exit (%%n: node name before @, %%h: after it)",
    )
    add_log_arguments(node, "warning", "log level (default warning; info logs every task)")
    node.add_argument(
        "-E", "--task-events", "--events", action="store_true", help="warns: not implemented yet"
    )
    node.add_argument("-S", "--statedb", metavar="PATH", help="warns: celeriac keeps no worker state file")
    for _, flag, _ in NO_OPS:
        kind = (
            {"type": int, "metavar": "SECONDS"}
            if flag == "--heartbeat-interval"
            else {"action": "store_true"}
        )
        node.add_argument(flag, help="accepted, no effect (an info line says why)", **kind)


def _add_refused_options(worker: argparse.ArgumentParser) -> None:
    refused = worker.add_argument_group("refused, with what to do instead")
    refused.add_argument(
        "-B",
        "--beat",
        action="store_true",
        help="refused: periodic tasks (beat) are not implemented yet (the message says what to run instead)",
    )
    refused.add_argument("-s", "--schedule-filename", "--schedule", dest="schedule", help="beat: as -B")
    refused.add_argument("--scheduler", help="beat: as -B")
    refused.add_argument("-D", "--detach", action="store_true", help="run it under systemd or supervisord")
    for flag in ("--uid", "--gid", "--umask", "--executable"):
        refused.add_argument(flag, help="as -D")


def add_commands(command: CommandFactory) -> None:
    """Register ``worker`` and ``purge`` (``command`` makes a subparser)."""
    worker = command(
        "worker",
        "Run a worker node: a master and prefork child processes (or -P solo). Takes Celery's "
        "`celery worker` flags.",
    )
    _add_pool_options(worker)
    _add_queue_options(worker)
    _add_node_options(worker)
    _add_refused_options(worker)
    worker.set_defaults(func=cmd_worker)

    purge = command("purge", "Delete the waiting messages of queues.")
    purge.add_argument(
        "-Q", "--queues", type=queue_list, help="queues to purge (default: every queue in task_queues)"
    )
    purge.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=cmd_purge)
