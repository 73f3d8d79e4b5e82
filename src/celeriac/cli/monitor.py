"""``celeriac monitor``, ``celeriac top`` and ``status --watch``: the command-line side of
:mod:`celeriac.observe.monitor`.

Every command builds the whole parser, so this module loads only what registering its
commands needs; the monitor, its history, alerts and web server load when a command runs.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson

from celeriac.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    CommandFactory,
    add_log_arguments,
    add_view_arguments,
    app_of,
    queue_list,
    seconds,
    setup_logging,
)
from celeriac.config import SETTINGS_BY_NAME
from celeriac.errors import ConfigurationError

if TYPE_CHECKING:  # loaded by the commands only: every `celeriac` command builds this parser
    from celeriac.observe.monitor import Monitor, MonitorState

logger = logging.getLogger("celeriac.monitor")

#: how often the monitor logs a one-line summary (at info level)
SUMMARY_EVERY_S = 60.0
_DEFAULT_HOST, _, _DEFAULT_PORT = str(SETTINGS_BY_NAME["monitor_web_bind"].default).rpartition(":")


def port_number(text: str) -> int:
    """A TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: give one from 1 to 65535") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number: give one from 1 to 65535")
    return value


def host_address(text: str) -> str:
    """A host name or an IP address (an IPv6 one with or without brackets), without a port."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise argparse.ArgumentTypeError("give a host name or IP address, e.g. 0.0.0.0")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a host: give the port with --port, or both as --bind HOST:PORT"
            ) from None
    return host


def add_commands(command: CommandFactory) -> None:
    """Register ``monitor`` and ``top`` (``command`` makes a subparser)."""
    mon = command(
        "monitor",
        "Watch every queue and worker: history, arrival and service rates, overload and threshold "
        "alerts (log, webhook, command); --web serves a live dashboard and Prometheus /metrics.",
    )
    mon.add_argument(
        "-Q", "--queues", type=queue_list, help="also watch these queues (e.g. a Celery deployment's)"
    )
    mon.add_argument("--interval", type=seconds, help="seconds between samples (default monitor_interval)")
    mon.add_argument("--history", metavar="PATH", help="history file (default monitor_history_path)")
    mon.add_argument("--web", action="store_true", help="serve the dashboard and /metrics")
    mon.add_argument("--bind", metavar="HOST:PORT", help="where --web listens (default monitor_web_bind)")
    mon.add_argument(
        "--address",
        metavar="HOST",
        type=host_address,
        help=f"the address --web listens on, keeping monitor_web_bind's port (default {_DEFAULT_HOST})",
    )
    mon.add_argument(
        "--port",
        type=port_number,
        help=f"the port --web listens on, keeping monitor_web_bind's address (default {_DEFAULT_PORT})",
    )
    mon.add_argument("--token", help="token the dashboard requires (default monitor_web_token)")
    mon.add_argument("--once", action="store_true", help="take one sample, print it and exit")
    mon.add_argument("--json", action="store_true", help="with --once: print JSON")
    add_log_arguments(mon, "info", "log level (default info)")
    mon.set_defaults(func=cmd_monitor)

    top = command("top", "A live terminal view of queues (lengths, rates, time to drain) and workers.")
    top.add_argument("-Q", "--queues", type=queue_list, help="also watch these queues")
    add_view_arguments(top)
    top.set_defaults(func=cmd_top)


def _check_bind(args: argparse.Namespace) -> None:
    """--bind says the whole address: --address and --port cannot be given beside it."""
    if args.bind is None:
        return
    flags = (("--address", args.address), ("--port", args.port))
    given = [flag for flag, value in flags if value is not None]
    if given:
        raise ConfigurationError(
            f"--bind and {' and '.join(given)} both say where --web listens: use --bind HOST:PORT "
            "alone, or --address HOST and --port PORT without --bind"
        )


def web_bind(configured: str, args: argparse.Namespace) -> str | None:
    """Where --web listens: --bind, or --address and --port over ``configured`` (None: unchanged)."""
    if args.bind is not None:
        return str(args.bind)
    if args.address is None and args.port is None:
        return None
    host, _, port = configured.rpartition(":")
    if args.address is not None:
        host = f"[{args.address}]" if ":" in args.address else args.address
    return f"{host}:{args.port if args.port is not None else port}"


def _apply_overrides(app: Any, args: argparse.Namespace) -> None:
    for setting, value in (
        ("monitor_history_path", args.history),
        ("monitor_web_bind", web_bind(app.conf.monitor_web_bind, args)),
        ("monitor_web_token", args.token),
    ):
        if value is not None:
            app.conf[setting] = value


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        logger.info("stopping (%s)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def state_json(state: MonitorState) -> bytes:
    """A sample as JSON (``monitor --once --json``)."""
    data = asdict(state)
    data["tasks"] = [{"queue": q, "task": t, "counts": row} for (q, t), row in state.tasks.items()]
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)


def cmd_monitor(args: argparse.Namespace) -> int:
    from celeriac.observe.history import History
    from celeriac.observe.monitor import Monitor
    from celeriac.observe.top import frame

    _check_bind(args)
    app = app_of(args)
    setup_logging(args.loglevel, "[%(asctime)s: %(levelname)s/monitor] %(message)s", args.logfile)
    _apply_overrides(app, args)
    conf = app.conf
    if args.json and not args.once:
        raise ConfigurationError("--json needs --once (the running monitor logs; --web serves JSON)")
    if args.web and args.once:
        raise ConfigurationError("--once takes one sample and exits: it cannot serve --web; drop one of them")
    history = History(":memory:" if args.once else conf.monitor_history_path, conf.monitor_history_days)
    monitor = Monitor(app, history, queues=args.queues or (), interval=args.interval)
    if args.once:
        try:
            state = monitor.sample()
        finally:
            monitor.close()
        sys.stdout.write(state_json(state).decode() + "\n" if args.json else frame(state) + "\n")
        return EXIT_FAILED if state.error else EXIT_OK
    web = None
    if args.web:
        from celeriac.observe.web import WebServer

        web = WebServer(monitor, conf.monitor_web_bind, conf.monitor_web_token)
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        if web is not None:
            web.start()
        _banner(monitor, web.url if web is not None else None)
        last_summary = [time.monotonic()]

        def on_sample(state: MonitorState) -> None:
            if time.monotonic() - last_summary[0] >= SUMMARY_EVERY_S:
                last_summary[0] = time.monotonic()
                logger.info("%s", summary(state))

        monitor.run(stop, on_sample)
    finally:
        if web is not None:
            web.stop()
        monitor.close()
    return EXIT_OK


def _banner(monitor: Monitor, url: str | None) -> None:
    conf = monitor.app.conf
    sinks = ", ".join(["log", *monitor.outbox.sinks]) or "log"
    logger.info(
        "monitoring %s every %g s; history %s; alerts to %s; overload after %g s",
        monitor.broker.location,
        monitor.interval,
        monitor.history.path,
        sinks,
        conf.monitor_overload_after,
    )
    if url is not None:
        logger.info("dashboard: %s  metrics: %s/metrics", url, url.rstrip("/"))


def summary(state: MonitorState) -> str:
    """One log line: queues, waiting, throughput, alerts, and the queues that are growing."""
    waiting = sum(q.length for q in state.queues)
    out = sum(q.service_rate or 0.0 for q in state.queues)
    workers = sum(1 for n in state.nodes if n.state == "running")
    line = (
        f"{len(state.queues)} queues, {waiting} messages waiting, {out:.1f} tasks/s finished, "
        f"{workers} workers, {len(state.alerts)} active alerts"
    )
    growing = [q.name for q in state.queues if q.state == "growing"]
    if growing:  # will not drain at today's rates, not yet long enough for the overload alert
        line += f", growing: {', '.join(growing)}"
    return line


def cmd_top(args: argparse.Namespace) -> int:
    from celeriac.observe.history import History
    from celeriac.observe.monitor import Monitor
    from celeriac.observe.top import frame

    app = app_of(args)
    logging.basicConfig(level=logging.CRITICAL)  # alerts show in the frame, not as log lines
    monitor = Monitor(app, History(":memory:"), queues=args.queues or (), interval=args.interval, sinks={})
    stop = threading.Event()
    _stop_on_signals(stop)
    tty = sys.stdout.isatty()
    shown = [0]

    def show(state: MonitorState) -> None:
        sys.stdout.write(("\x1b[H\x1b[2J" if tty else "") + frame(state) + "\n" + ("" if tty else "\n"))
        sys.stdout.flush()
        shown[0] += 1
        if args.iterations and shown[0] >= args.iterations:
            stop.set()

    try:
        monitor.run(stop, show)
    finally:
        monitor.close()
    return EXIT_OK
