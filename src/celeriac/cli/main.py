"""``celeriac``: the parser and the entry point; each command lives in its group's module.

Celery's global options (``-A``, ``-b``, ``--result-backend``, ``--config``, ``--workdir``,
``-q``, ``-C``, ...) are taken before the command, as in ``celery -A proj worker``, and
after it, as in ``celeriac worker -A proj``; a value given after the command wins.

Exit codes (see :mod:`celeriac.cli.common`): 0 success; 1 the command failed at run
time; 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celeriac.cli import inspect, migrate, monitor, munin, tasks, worker
from celeriac.cli.common import EXIT_FAILED, EXIT_USAGE, add_global_options, apply_process_options
from celeriac.errors import CeleriacError, ConfigurationError
from celeriac.observe.munin import plugin_graph

if TYPE_CHECKING:
    from celeriac.app import Celeriac


def build_parser() -> argparse.ArgumentParser:
    """The ``celeriac`` parser with every command (each command's start builds all of it)."""
    parser = argparse.ArgumentParser(
        prog="celeriac",
        description="celeriac: a distributed task queue with Celery's settings and protocol. Global "
        "options go before or after the command: `celeriac -A proj worker` = `celeriac worker -A proj`.",
    )
    parser.add_argument(
        "--version", action="version", version=f"celeriac {__import__('celeriac').__version__}"
    )
    add_global_options(parser, in_command=False)
    parser.set_defaults(instance=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, **kw)
        add_global_options(p, in_command=True)
        return p

    for group in (worker, inspect, monitor, tasks, munin, migrate):  # the order of `celeriac --help`
        group.add_commands(command)
    return parser


def main(argv: Sequence[str] | None = None, app: Celeriac | None = None) -> int:
    """Entry point of the ``celeriac`` command; ``app`` is the app when no ``-A`` names one
    (:meth:`Celeriac.start <celeriac.app.Celeriac.start>` passes itself)."""
    graph = plugin_graph(sys.argv[0])  # run by munin-node through a celeriac_<graph> symlink
    if graph is not None:
        argv = ["munin", graph, *(sys.argv[1:] if argv is None else argv)]
    args = build_parser().parse_args(argv)
    args.instance = app
    try:
        apply_process_options(args)
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
