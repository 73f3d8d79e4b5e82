"""A Munin plugin: queue length and oldest message age per queue.

``celeriac`` is a wildcard plugin: munin-node runs it through symlinks named
``celeriac_<graph>`` (``celeriac_length``, ``celeriac_age``) in its plugins
directory, with one argument (``config``, ``autoconf``, ``suggest``) or none
(fetch the values). The app comes from ``env.CELERIAC_APP`` in the plugin's
section of ``plugin-conf.d``; ``celeriac munin install`` writes both.

Graphs (one line per queue, category ``celeriac``):

``length``
    messages not yet finished: ready, scheduled (ETA), reserved and running.
``age``
    seconds the oldest ready message has waited; ``U`` (unknown) where the broker
    cannot tell without taking the message, 0 for a queue with nothing ready.

Warning and critical levels come from the ``monitor_thresholds`` setting
(``length`` and ``oldest_age``; a queue's own entry overrides ``"*"``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from celeriac.errors import CeleriacError, ConfigurationError
from celeriac.observe.watch import queue_limits, watched_queues

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.brokers.base import QueueLength

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: what a plugin symlink's name starts with; the rest names the graph
PLUGIN_PREFIX = "celeriac_"
#: the arguments munin-node passes (none means fetch)
ACTIONS = ("config", "autoconf", "suggest", "fetch")
DEFAULT_PLUGINS_DIR = "/etc/munin/plugins"
DEFAULT_CONF_DIR = "/etc/munin/plugin-conf.d"
CONF_NAME = "celeriac"
CATEGORY = "celeriac"

#: Munin's rule for field names; older Munin versions also cut them at 19 characters
_FIELD_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FIELD_MAX = 19
_HASH_LEN = 6


@dataclass(frozen=True, slots=True)
class Graph:
    """One Munin graph: its texts and the ``monitor_thresholds`` kind behind its levels."""

    title: str
    vlabel: str
    info: str
    field_info: str
    threshold: str


GRAPHS: dict[str, Graph] = {
    "length": Graph(
        title="Celeriac queue length",
        vlabel="messages",
        info="Messages not yet finished per queue: ready, scheduled (ETA), reserved by a worker and running.",
        field_info="messages in {queue!r} not yet finished (ready + scheduled + reserved + running)",
        threshold="length",
    ),
    "age": Graph(
        title="Celeriac oldest message age",
        vlabel="seconds",
        info="Seconds the oldest ready message of each queue has waited (U where the broker cannot tell).",
        field_info="seconds the oldest ready message in {queue!r} has waited",
        threshold="oldest_age",
    ),
}

# -- which queues, which fields --------------------------------------------------------------------


def plugin_graph(argv0: str) -> str | None:
    """The graph a plugin symlink names (``celeriac_length`` -> ``length``); None if not one."""
    name = os.path.basename(argv0)
    return name[len(PLUGIN_PREFIX) :] if name.startswith(PLUGIN_PREFIX) else None


def check_graph(graph: str) -> Graph:
    """The graph called ``graph``; ConfigurationError naming the valid ones otherwise."""
    try:
        return GRAPHS[graph]
    except KeyError:
        raise ConfigurationError(f"unknown graph {graph!r}: use one of {', '.join(GRAPHS)}") from None


def _hash(name: str, length: int = _HASH_LEN) -> str:
    import hashlib  # here and below: every celeriac command loads this module, few need these

    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:length]


def _sanitize(name: str) -> str:
    field = re.sub(r"[^A-Za-z0-9_]", "_", name) or "_"
    return "_" + field if field[0].isdigit() else field


def field_names(queues: Iterable[str]) -> dict[str, str]:
    """A Munin field name for each queue: ``^[A-Za-z_][A-Za-z0-9_]*$``, at most 19 characters.

    Other characters become ``_`` and a leading digit gets a ``_`` in front. A name that
    is too long, or that two queues would share, is cut and ends in ``_`` plus a hash of
    the queue name, so it stays the same from run to run. A queue whose name already is
    a valid field keeps it.
    """
    queues = sorted(set(queues))
    plain = {q: _sanitize(q) for q in queues}
    holders: dict[str, list[str]] = {}
    for queue, field in plain.items():
        holders.setdefault(field, []).append(queue)
    fields: dict[str, str] = {}
    hashed: list[str] = []
    for queue, field in plain.items():
        shared = len(holders[field]) > 1
        if len(field) <= FIELD_MAX and (not shared or field == queue):
            fields[queue] = field
        else:
            hashed.append(queue)
    length = _HASH_LEN
    while True:
        taken = set(fields.values())
        cut = FIELD_MAX - length - 1
        proposed = {q: f"{plain[q][:cut].rstrip('_')}_{_hash(q, length)}" for q in hashed}
        if len(set(proposed.values())) == len(proposed) and not taken & set(proposed.values()):
            return {q: (proposed[q] if q in proposed else fields[q]) for q in queues}
        length += 2


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0").rstrip(".")


def _value(graph: str, length: QueueLength) -> str:
    if graph == "length":
        return str(length.total)
    if length.oldest_age is not None:
        return _number(round(length.oldest_age, 3))
    return "0" if length.ready == 0 else "U"


# -- the protocol ----------------------------------------------------------------------------------


def config_lines(app: Celeriac, graph: str, queues: Sequence[str]) -> list[str]:
    """What ``config`` prints: the graph, then label, info, levels of each queue's field."""
    spec = check_graph(graph)
    lines = [
        f"graph_title {spec.title}",
        f"graph_vlabel {spec.vlabel}",
        f"graph_category {CATEGORY}",
        f"graph_info {spec.info}",
        "graph_args --base 1000 -l 0",
    ]
    fields = field_names(queues)
    for queue in queues:
        field = fields[queue]
        lines += [
            f"{field}.label {queue}",
            f"{field}.info {spec.field_info.format(queue=queue)}",
            f"{field}.min 0",
            f"{field}.draw LINE2",
        ]
        limits = queue_limits(app, queue).get(spec.threshold)
        if limits is not None:
            warning, critical = limits
            lines.append(f"{field}.warning {_number(warning)}")
            if critical is not None:
                lines.append(f"{field}.critical {_number(critical)}")
    return lines


def fetch_lines(app: Celeriac, graph: str, queues: Sequence[str]) -> list[str]:
    """What a fetch prints: ``<field>.value <number>`` per queue (``U``: unknown)."""
    check_graph(graph)
    fields = field_names(queues)
    lengths = app.broker.queue_lengths(list(queues))
    return [f"{fields[length.queue]}.value {_value(graph, length)}" for length in lengths]


def autoconf_line(load: Callable[[], Celeriac]) -> str:
    """``yes`` when the app loads and its broker answers, else ``no (reason)``."""
    try:
        app = load()
    except ConfigurationError as exc:
        return f"no (cannot load the app: {exc})"
    try:
        if app.conf.broker_url.startswith("memory://"):
            return "no (the memory:// broker lives inside one process; Munin needs a shared broker)"
        app.broker.queue_names()
    except (CeleriacError, OSError) as exc:
        return f"no (cannot reach the broker: {exc})"
    return "yes"


def suggest_lines() -> list[str]:
    """What ``suggest`` prints: the graph names, which munin-node-configure links as ``celeriac_<graph>``."""
    return list(GRAPHS)


def plugin(app_loader: Callable[[], Celeriac], graph: str, action: str | None) -> int:
    """Run one plugin action and print its output; return the exit code."""
    action = action or "fetch"
    if action not in ACTIONS:
        raise ConfigurationError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)} (or none)")
    if action == "suggest":
        emit(suggest_lines())
        return EXIT_OK
    check_graph(graph)
    if action == "autoconf":
        emit([autoconf_line(app_loader)])
        return EXIT_OK
    app = app_loader()
    try:
        queues = watched_queues(app)
        if action == "config":
            lines = config_lines(app, graph, queues)
            if os.environ.get("MUNIN_CAP_DIRTYCONFIG") == "1":  # values too: saves munin-node a run
                lines += fetch_lines(app, graph, queues)
        else:
            lines = fetch_lines(app, graph, queues)
    except ConfigurationError:
        raise
    except (CeleriacError, OSError) as exc:
        print(f"celeriac_{graph}: cannot read the broker {app.broker.location}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    emit(lines)
    return EXIT_OK


def emit(lines: Iterable[str]) -> None:
    """Print ``lines`` for munin-node, one a line, and flush."""
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


# -- install -----------------------------------------------------------------------------------------


def find_executable() -> str:
    """The ``celeriac`` script the plugin links point to: on PATH, else the running one."""
    import shutil

    found = shutil.which("celeriac")
    if found:
        return os.path.realpath(found)
    running = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if running and os.path.isfile(running) and os.access(running, os.X_OK) and not running.endswith(".py"):
        return running
    raise ConfigurationError(
        "cannot find the celeriac executable (not on PATH, and this process is not running it): "
        "install celeriac so that `celeriac` is on PATH, or run `celeriac munin install` through it"
    )


def conf_text(app_spec: str, pythonpath: str) -> str:
    """The ``plugin-conf.d`` file: where the plugins find the app."""
    return (
        "# celeriac Munin plugins (celeriac_length, celeriac_age): written by `celeriac munin install`.\n"
        "[celeriac_*]\n"
        f"env.CELERIAC_APP {app_spec}\n"
        f"env.PYTHONPATH {pythonpath}\n"
        "# The plugins run as munin-node's default plugin user (usually nobody). Name a user that can\n"
        "# import the app and reach the broker (a SQLite broker file: read and write access):\n"
        "#user celeriac\n"
    )


def _points_to(link: Path, target: str) -> bool:
    return link.is_symlink() and os.path.realpath(link) == os.path.realpath(target)


def install(
    app_spec: str,
    graphs: Sequence[str],
    plugins_dir: str = DEFAULT_PLUGINS_DIR,
    conf_dir: str = DEFAULT_CONF_DIR,
    executable: str | None = None,
    pythonpath: str | None = None,
    force: bool = False,
) -> list[str]:
    """Link ``celeriac_<graph>`` to the executable and write the plugin configuration.

    Returns what was done, one line each. Refuses (ConfigurationError) to replace a file or
    a link pointing elsewhere unless ``force``; changes nothing in that case.
    """
    for graph in graphs:
        check_graph(graph)
    target = executable or find_executable()
    plugins, confs = Path(plugins_dir), Path(conf_dir)
    for directory, option in ((plugins, "--plugins-dir"), (confs, "--conf-dir")):
        if not directory.is_dir():
            raise ConfigurationError(
                f"{directory} is not a directory: install munin-node, or pass {option} DIR"
            )
    conf_file = confs / CONF_NAME
    text = conf_text(app_spec, pythonpath if pythonpath is not None else os.getcwd())
    links = [plugins / f"{PLUGIN_PREFIX}{graph}" for graph in graphs]
    if not force:
        clashes = [
            f"{link} -> {os.readlink(link)}" if link.is_symlink() else f"{link} (a file)"
            for link in links
            if os.path.lexists(link) and not _points_to(link, target)
        ]
        if conf_file.exists() and conf_file.read_text() != text:
            clashes.append(f"{conf_file} (different settings)")
        if clashes:
            raise ConfigurationError(
                "refusing to replace " + "; ".join(clashes) + ": pass --force to overwrite"
            )
    done = []
    for link in links:
        if _points_to(link, target):
            done.append(f"kept    {link} -> {target}")
            continue
        if os.path.lexists(link):
            link.unlink()
        link.symlink_to(target)
        done.append(f"linked  {link} -> {target}")
    if conf_file.exists() and conf_file.read_text() == text:
        done.append(f"kept    {conf_file}")
    else:
        conf_file.write_text(text)
        done.append(f"wrote   {conf_file}")
    return done
