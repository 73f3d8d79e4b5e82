"""What every ``celeriac`` command shares: loading the app, logging, argument types, exit codes.

Exit codes: 0 success; 1 the command failed at run time (broker error, a cold
shutdown that cut tasks short); 2 bad usage or configuration (the message says
which argument or setting and how to fix it).

This module imports no command module: each command group imports it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson

from celeriac import signals
from celeriac.app import Celeriac
from celeriac.errors import ConfigurationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: makes one subcommand's parser, with ``-A/--app``: ``command(name, help_text, **add_parser_kwargs)``
CommandFactory = Callable[..., argparse.ArgumentParser]


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


#: The parent of task loggers (``celeriac.utils.log.get_task_logger``): ``after_setup_task_logger``'s.
TASK_LOGGER = "celeriac.task"


def setup_logging(level: str, fmt: str, logfile: str | None = None) -> None:
    """Log to stderr (or ``logfile``) at ``level`` with ``fmt``, as Celery does with its signals.

    A ``setup_logging`` receiver takes logging over: celeriac then configures nothing.
    Otherwise the root logger gets the handler, and ``after_setup_logger`` and
    ``after_setup_task_logger`` receivers may add to it.
    """
    loglevel = logging.getLevelNamesMapping()[level.upper()]
    options: dict[str, Any] = {"loglevel": loglevel, "logfile": logfile, "format": fmt, "colorize": False}
    if signals.setup_logging.send(sender=None, **options):
        return
    handler: logging.Handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(loglevel)
    signals.after_setup_logger.send(sender=None, logger=root, **options)
    signals.after_setup_task_logger.send(sender=None, logger=logging.getLogger(TASK_LOGGER), **options)


def confirm(prompt: str, force: bool) -> bool:
    """Ask ``prompt`` on the terminal (yes/NO); ``force`` answers yes; refuse without a terminal."""
    if force:
        return True
    if not sys.stdin.isatty():
        raise ConfigurationError(
            "refusing to delete without confirmation on a non-interactive input: pass -f/--force"
        )
    return input(f"{prompt} (yes/NO)? ").strip().lower() in ("y", "yes")


def write_json(value: Any) -> None:
    """Print ``value`` as indented JSON (``--json`` outputs)."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


# -- argument types ---------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def prefetch(text: str) -> int | str:
    """A prefetch multiplier: a whole number >= 0 or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a whole number >= 0 or 'auto'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: use a whole number >= 0 (0 = unlimited) or 'auto'")
    return value


def queue_list(text: str) -> list[str]:
    """Comma-separated queue names, at least one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one queue name, e.g. -Q celery,transient")
    return names


def json_of(kind: type) -> Callable[[str], Any]:
    """A JSON value of type ``kind`` (``list`` or ``dict``)."""

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


def seconds(text: str) -> float:
    """A number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds > 0, e.g. 5")
    return value


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """``--interval`` and ``-n`` of the live terminal view (``top``, ``status --watch``)."""
    parser.add_argument("--interval", type=seconds, default=2.0, help="seconds between updates (default 2)")
    parser.add_argument(
        "-n", "--iterations", type=positive_int, default=0, help="stop after N updates (default: until quit)"
    )


def add_log_arguments(parser: argparse.ArgumentParser, default: str, level_help: str) -> None:
    """``-l/--loglevel`` (default ``default``) and ``--logfile``, as the long-running commands take them."""
    parser.add_argument(
        "-l", "--loglevel", default=default, type=str.lower, choices=LOG_LEVELS, help=level_help
    )
    parser.add_argument("--logfile", help="log to this file instead of stderr")
