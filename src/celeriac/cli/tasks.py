"""Commands about single tasks: ``call`` sends one, ``result`` reads its result, ``deadletters``
lists, requeues or deletes the messages the workers could not run."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from celeriac.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandFactory,
    app_of,
    confirm,
    json_of,
    positive_int,
)
from celeriac.errors import CeleriacError


def cmd_deadletters(args: argparse.Namespace) -> int:
    app = app_of(args)
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
    if not confirm("This deletes dead letters for good", args.force):
        print("Nothing removed.")
        return EXIT_OK
    print(f"deleted {broker.purge_dead_letters(ids)} dead letter(s)")
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    app = app_of(args)
    options: dict[str, Any] = {}
    for key in ("queue", "countdown", "expires", "delivery_mode"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    result = app.send_task(args.name, args.args, args.kwargs, **options)
    print(result.id)
    return EXIT_OK


def cmd_result(args: argparse.Namespace) -> int:
    app = app_of(args)
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


def add_commands(command: CommandFactory) -> None:
    """Register ``deadletters``, ``call`` and ``result`` (``command`` makes a subparser)."""
    dead = command("deadletters", "List, requeue or delete messages the workers could not run.")
    dead.add_argument("action", choices=("list", "requeue", "purge"), nargs="?", default="list")
    dead.add_argument("--queue", help="only this queue (list)")
    dead.add_argument("--id", dest="ids", action="append", help="only this dead letter id (repeatable)")
    dead.add_argument("--limit", type=positive_int, default=50, help="how many to list (default 50)")
    dead.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation (purge)")
    dead.set_defaults(func=cmd_deadletters)

    call = command("call", "Send a task by name and print its id.")
    call.add_argument("name", help="task name, e.g. proj.tasks.add")
    call.add_argument("--args", type=json_of(list), default=[], help="positional arguments as a JSON list")
    call.add_argument("--kwargs", type=json_of(dict), default={}, help="keyword arguments as a JSON object")
    call.add_argument("--queue")
    call.add_argument("--countdown", type=float)
    call.add_argument("--expires", type=float)
    call.add_argument("--delivery-mode", dest="delivery_mode", choices=("persistent", "transient"))
    call.set_defaults(func=cmd_call)

    result = command("result", "Show the state and result of a task.")
    result.add_argument("task_id")
    result.add_argument("--timeout", type=float, help="wait up to this many seconds for it to finish")
    result.set_defaults(func=cmd_result)
