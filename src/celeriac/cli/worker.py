"""``celeriac worker`` runs a worker node (a master and its prefork children); ``celeriac purge``
empties the queues it consumes."""

from __future__ import annotations

import argparse
import logging
from types import SimpleNamespace

from celeriac import signals
from celeriac.cli.common import (
    EXIT_OK,
    CommandFactory,
    add_log_arguments,
    confirm,
    load_app,
    positive_int,
    prefetch,
    queue_list,
    setup_logging,
)
from celeriac.config import beat_schedule_warning, beat_unsupported
from celeriac.errors import ConfigurationError


def cmd_worker(args: argparse.Namespace) -> int:
    from celeriac.worker.master import Master
    from celeriac.worker.options import WorkerOptions, expand_nodename

    app = load_app(args.app)
    refusal = beat_unsupported(app) if args.beat else None
    if refusal:
        raise ConfigurationError(refusal)
    # logging first, so what django.setup() and the task modules log at import is seen
    setup_logging(args.loglevel, app.conf.worker_log_format, args.logfile)
    app.import_task_modules()
    beat_warning = beat_schedule_warning(app)
    if beat_warning:
        logging.getLogger("celeriac.worker").warning("%s", beat_warning)
    # as in Celery, after the task modules (their receivers are connected) and before the
    # options read the settings (a receiver may change them)
    nodename = expand_nodename(args.hostname or "celeriac@%h")
    instance = SimpleNamespace(app=app, hostname=nodename)  # what Celery's instance has so far
    options_given = {name: value for name, value in vars(args).items() if name != "func"}
    signals.celeryd_init.send(sender=nodename, instance=instance, conf=app.conf, options=options_given)
    options = WorkerOptions.from_app(
        app,
        queues=args.queues,
        concurrency=args.concurrency,
        prefetch_multiplier=args.prefetch_multiplier,
        max_tasks_per_child=args.max_tasks_per_child,
        max_memory_per_child=args.max_memory_per_child,
        max_memory_per_child_hard=args.max_memory_per_child_hard,
        nodename=nodename,
    )
    return Master(app, options).run()


def cmd_purge(args: argparse.Namespace) -> int:
    app = load_app(args.app)
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


def add_commands(command: CommandFactory) -> None:
    """Register ``worker`` and ``purge`` (``command`` makes a subparser)."""
    worker = command("worker", "Run a worker node: a master and prefork child processes.")
    worker.add_argument(
        "-Q",
        "--queues",
        type=queue_list,
        help="comma-separated queues to consume (default: every queue in task_queues)",
    )
    worker.add_argument(
        "-c",
        "--concurrency",
        type=positive_int,
        help="number of child processes (default: worker_concurrency, else CPUs)",
    )
    worker.add_argument(
        "--prefetch-multiplier",
        type=prefetch,
        help="messages each child fetches at a time: N, 0 (unlimited) or auto",
    )
    worker.add_argument("--max-tasks-per-child", type=positive_int, help="replace a child after N tasks")
    worker.add_argument(
        "--max-memory-per-child",
        type=positive_int,
        metavar="KIB",
        help="replace a child after a task when its own memory (USS) exceeds KIB",
    )
    worker.add_argument(
        "--max-memory-per-child-hard",
        type=positive_int,
        metavar="KIB",
        help="kill a child at once, even mid-task, when its own memory (USS) exceeds KIB",
    )
    worker.add_argument(
        "-n",
        "--hostname",
        help="node name (default celeriac@%%h; %%h host, %%n short host, %%d domain, %%i pid)",
    )
    worker.add_argument(
        "-B",
        "--beat",
        action="store_true",
        help="refused: periodic tasks (beat) are not implemented yet (the message says what to run instead)",
    )
    add_log_arguments(worker, "warning", "log level (default warning; info logs every task)")
    worker.set_defaults(func=cmd_worker)

    purge = command("purge", "Delete the waiting messages of queues.")
    purge.add_argument(
        "-Q", "--queues", type=queue_list, help="queues to purge (default: every queue in task_queues)"
    )
    purge.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(func=cmd_purge)
