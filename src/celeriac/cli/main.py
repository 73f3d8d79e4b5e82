"""``celeriac``: the parser and the entry point; each command lives in its group's module.

Exit codes (see :mod:`celeriac.cli.common`): 0 success; 1 the command failed at run
time; 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from celeriac.cli import inspect, monitor, munin, tasks, worker
from celeriac.cli.common import EXIT_FAILED, EXIT_USAGE
from celeriac.errors import CeleriacError, ConfigurationError
from celeriac.observe.munin import plugin_graph


def build_parser() -> argparse.ArgumentParser:
    """The ``celeriac`` parser with every command (each command's start builds all of it)."""
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

    for group in (worker, inspect, monitor, tasks, munin):  # the order of `celeriac --help`
        group.add_commands(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``celeriac`` command."""
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
