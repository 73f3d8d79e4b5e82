"""``celeriac munin``: the command line of the Munin plugin in :mod:`celeriac.observe.munin`.

``celeriac munin [GRAPH] [ACTION]`` runs the plugin; ``celeriac munin install`` sets it up.
Run through a ``celeriac_<graph>`` symlink, ``celeriac`` turns its arguments into
``celeriac munin <graph> ...`` (see :func:`celeriac.cli.main.main`).
"""

from __future__ import annotations

import argparse
import os
import sys

from celeriac.cli.common import EXIT_FAILED, EXIT_OK, CommandFactory, app_of, load_app
from celeriac.errors import ConfigurationError
from celeriac.observe.munin import (
    ACTIONS,
    CONF_NAME,
    DEFAULT_CONF_DIR,
    DEFAULT_PLUGINS_DIR,
    GRAPHS,
    PLUGIN_PREFIX,
    emit,
    install,
    plugin,
)

HELP_EPILOG = f"""\
Munin runs wildcard plugins through symlinks; celeriac is one. `celeriac munin
install` links celeriac_length and celeriac_age in --plugins-dir (default
{DEFAULT_PLUGINS_DIR}) to the celeriac executable and writes
--conf-dir/{CONF_NAME} (default {DEFAULT_CONF_DIR}) setting env.CELERIAC_APP and
env.PYTHONPATH for them. Invoked as celeriac_<graph>, celeriac acts as that
plugin and takes the app from $CELERIAC_APP.

graphs (one line per queue):
  length   messages not yet finished: ready + scheduled + reserved + running
  age      seconds the oldest ready message has waited (U: the broker cannot tell)

actions (what munin-node passes):
  (none) or fetch   print <field>.value lines
  config            graph and field definitions; warning/critical from monitor_thresholds
  autoconf          yes, or no (reason); always exits 0
  suggest           the graph names, one a line

examples:
  celeriac munin -A proj length config
  celeriac munin -A proj age
  celeriac munin install -A proj [--graphs length,age] [--force]
  munin-run celeriac_length
"""


def _graph_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in GRAPHS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give graphs out of {', '.join(GRAPHS)}, comma-separated (e.g. length,age)"
        )
    return list(dict.fromkeys(names))


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``celeriac munin`` to ``parser``; return it."""
    parser.usage = (
        f"%(prog)s [-A APP] [GRAPH] [{'|'.join(ACTIONS)}]\n"
        "       %(prog)s install [-A APP] [--plugins-dir DIR] [--conf-dir DIR] [--graphs length,age]"
        " [--force]"
    )
    parser.add_argument(
        "graph", nargs="?", metavar="GRAPH", help=f"{' or '.join(GRAPHS)} (default length); or: install"
    )
    parser.add_argument("action", nargs="?", metavar="ACTION", help=f"{', '.join(ACTIONS)} (default fetch)")
    parser.add_argument(
        "--plugins-dir",
        metavar="DIR",
        help=f"install: Munin's plugins directory (default {DEFAULT_PLUGINS_DIR})",
    )
    parser.add_argument(
        "--conf-dir", metavar="DIR", help=f"install: Munin's plugin-conf.d (default {DEFAULT_CONF_DIR})"
    )
    parser.add_argument("--graphs", type=_graph_list, help="install: which graphs (default length,age)")
    parser.add_argument(
        "--force", action="store_true", help="install: replace existing links and configuration"
    )
    return parser


def add_commands(command: CommandFactory) -> None:
    """Register ``munin`` (``command`` makes a subparser)."""
    add_arguments(
        command(
            "munin",
            "Munin plugin: queue length and oldest message age per queue; `munin install` sets it up.",
            epilog=HELP_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    ).set_defaults(func=cmd_munin)


def cmd_munin(args: argparse.Namespace) -> int:
    """``celeriac munin``: be the plugin, or install it."""
    graph, action = args.graph, args.action
    if graph in (*ACTIONS, "install") and action is None:
        graph, action = None, graph
    if action == "install":
        if graph is not None:
            raise ConfigurationError("install takes no GRAPH: pick graphs with --graphs length,age")
        return _cmd_install(args)
    given = [
        option
        for option, value in (
            ("--plugins-dir", args.plugins_dir),
            ("--conf-dir", args.conf_dir),
            ("--graphs", args.graphs),
            ("--force", args.force or None),
        )
        if value is not None
    ]
    if given:
        raise ConfigurationError(f"{', '.join(given)}: only for `celeriac munin install`")
    return plugin(lambda: app_of(args), graph or "length", action)


def _cmd_install(args: argparse.Namespace) -> int:
    unsaved = [
        flag
        for flag, value in (
            ("-b", args.broker),
            ("--result-backend", args.result_backend),
            ("--config", args.config),
        )
        if value
    ]
    if unsaved:
        raise ConfigurationError(
            f"{', '.join(unsaved)}: munin install writes only the app (-A) into the plugin's "
            "configuration: set broker_url and result_backend in the app's settings instead"
        )
    spec = args.app or os.environ.get("CELERIAC_APP")
    if not spec:
        raise ConfigurationError("install needs the app: pass -A module (as you would to `celeriac worker`)")
    load_app(spec)  # fail now, not in munin-node's log
    graphs = args.graphs or list(GRAPHS)
    plugins_dir = os.path.abspath(args.plugins_dir or DEFAULT_PLUGINS_DIR)
    conf_dir = os.path.abspath(args.conf_dir or DEFAULT_CONF_DIR)
    try:
        done = install(spec, graphs, plugins_dir, conf_dir, force=args.force)
    except OSError as exc:
        print(
            f"celeriac munin install: {exc} (run as root, or pass --plugins-dir/--conf-dir)", file=sys.stderr
        )
        return EXIT_FAILED
    test = "munin-run"
    if plugins_dir != DEFAULT_PLUGINS_DIR:
        test += f" --servicedir {plugins_dir}"
    if conf_dir != DEFAULT_CONF_DIR:
        test += f" --sconfdir {conf_dir}"
    first = f"{PLUGIN_PREFIX}{graphs[0]}"
    emit(
        [
            *done,
            f"test:   {test} {first} config && {test} {first}",
            "then:   systemctl restart munin-node   (munin-node reads its plugins at start)",
        ]
    )
    return EXIT_OK
