"""What every ``celeriac`` command shares: loading the app, logging, argument types, exit codes.

Exit codes: 0 success; 1 the command failed at run time (broker error, a cold
shutdown that cut tasks short); 2 bad usage or configuration (the message says
which argument or setting and how to fix it).

This module imports no command module: each command group imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson

from celeriac import config, signals
from celeriac.app import Celeriac
from celeriac.context import current_request
from celeriac.errors import ConfigurationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: accepted in any case (``-l INFO``); ``fatal`` is Celery's name for critical
LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "fatal")

#: makes one subcommand's parser, with the global options: ``command(name, help_text, **add_parser_kwargs)``
CommandFactory = Callable[..., argparse.ArgumentParser]


# -- loading the app --------------------------------------------------------------------------


def _is_app(value: Any) -> bool:
    return isinstance(value, Celeriac)


def _find_app(module: Any, name: str) -> Celeriac:
    """The app in ``module``, in the order of Celery's ``find_app``: attribute ``app``, then
    ``celery`` (and ``celeriac``); for a package, its submodule ``celery`` (``proj/celery.py``,
    the layout of Celery's Django guide); then the one app among the module's attributes."""
    for attr in ("app", "celery", "celeriac"):
        candidate = getattr(module, attr, None)
        if _is_app(candidate):
            return candidate
    if hasattr(module, "__path__"):
        for sub in ("celery", "celeriac"):
            try:
                submodule = _import(f"{name}.{sub}", name, missing_ok=True)
            except _Missing:
                continue
            with contextlib.suppress(ConfigurationError):  # no app in it: look on
                return _find_app(submodule, f"{name}.{sub}")
    found = list({id(value): value for value in vars(module).values() if _is_app(value)}.values())
    if len(found) == 1:
        return found[0]
    detail = "several apps; name one with -A module:attribute" if found else "no Celeriac app"
    raise ConfigurationError(f"-A {name}: module {name!r} has {detail}")


class _Missing(Exception):
    """The module looked for does not exist (an error in importing it is not this)."""


def _import(module_name: str, spec: str, missing_ok: bool = False) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if missing_ok and exc.name == module_name:
            raise _Missing(module_name) from exc
        raise ConfigurationError(f"-A {spec}: cannot import {module_name!r}: {exc}") from exc
    except ImportError as exc:
        raise ConfigurationError(f"-A {spec}: cannot import {module_name!r}: {exc}") from exc


def load_app(spec: str | None) -> Celeriac:
    """The app ``spec`` names: ``module:attribute``, ``module.attribute``, or a module (or
    package) to look in (:func:`_find_app`); default ``$CELERIAC_APP``, then Celery's
    ``$CELERY_APP``."""
    spec = spec or os.environ.get("CELERIAC_APP") or os.environ.get("CELERY_APP")
    if not spec:
        raise ConfigurationError(
            "no app given: pass -A module (the module that creates Celeriac(...)) or set CELERIAC_APP"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = spec.partition(":")
    if not attr:
        try:
            return _find_app(_import(module_name, spec, missing_ok="." in module_name), module_name)
        except _Missing:  # not a module: proj.app names attribute app of module proj, as in Celery
            module_name, _, attr = module_name.rpartition(".")
    app = getattr(_import(module_name, spec), attr, None)
    if not _is_app(app):
        raise ConfigurationError(f"-A {spec}: {module_name}.{attr} is not a Celeriac app")
    return app


def app_of(args: argparse.Namespace) -> Celeriac:
    """The app a command works on, with the global options applied over its settings.

    ``-A`` (else ``$CELERIAC_APP`` or ``$CELERY_APP``) names it; a script that calls
    ``app.start()`` passes itself as ``args.instance``. Then ``--config MODULE`` is loaded
    over its settings, and ``-b/--broker`` and ``--result-backend`` set ``broker_url`` and
    ``result_backend``: the command line wins, as it does with Celery.
    """
    app = args.instance if args.app is None and args.instance is not None else load_app(args.app)
    if args.config:  # over the app's own settings, not under them as config_from_object's are
        app.conf.update(config.from_object(args.config))
        app.conf.apply_environment()
    if args.broker:
        app.conf.broker_url = args.broker
    if args.result_backend:
        app.conf.result_backend = args.result_backend
    return app


def apply_process_options(args: argparse.Namespace) -> None:
    """The global options that act before any command: ``--workdir``; refuse ``--loader``."""
    if args.loader:
        raise ConfigurationError(
            f"--loader {args.loader}: celeriac has no loaders; configure the app in the module -A "
            "names (app.config_from_object(...)), or pass --config MODULE"
        )
    if args.workdir:
        try:
            os.chdir(args.workdir)
        except OSError as exc:
            raise ConfigurationError(f"--workdir {args.workdir}: {exc.strerror}") from None


def add_global_options(parser: argparse.ArgumentParser, in_command: bool) -> None:
    """Celery's global options, which go before the command or (``in_command``) after it.

    In a command's parser they default to nothing at all (``SUPPRESS``), so that a value
    given before the command is not overwritten by the command's default.
    """
    default = argparse.SUPPRESS if in_command else None
    flag = argparse.SUPPRESS if in_command else False
    title = "global options (before or after the command)" if in_command else "global options"
    group = parser.add_argument_group(title)
    group.add_argument(
        "-A",
        "--app",
        default=default,
        help="module (or module:attribute) that creates the app; default $CELERIAC_APP, then $CELERY_APP",
    )
    group.add_argument("-b", "--broker", default=default, help="broker URL, over broker_url")
    group.add_argument("--result-backend", default=default, help="result backend URL, over result_backend")
    group.add_argument(
        "--config", default=default, metavar="MODULE", help="settings module loaded over the app's settings"
    )
    group.add_argument(
        "--workdir", default=default, metavar="DIR", help="change to DIR before loading the app"
    )
    group.add_argument(
        "--loader", default=default, help="refused: celeriac has no loaders (use --config or the app module)"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=flag, help="accepted: celeriac prints no banner"
    )
    group.add_argument(
        "-C", "--no-color", action="store_true", default=flag, help="accepted: celeriac prints no colours"
    )
    group.add_argument(
        "--skip-checks",
        action="store_true",
        default=flag,
        help="accepted: celeriac runs no Django system checks at start",
    )


#: The parent of task loggers (``celeriac.utils.log.get_task_logger``): ``after_setup_task_logger``'s.
TASK_LOGGER = "celeriac.task"


class TaskFormatter(logging.Formatter):
    """Celery's task log lines: ``%(task_name)s`` and ``%(task_id)s`` are those of the task
    running in this process (``???`` outside one)."""

    def format(self, record: logging.LogRecord) -> str:
        request = current_request()
        if not hasattr(record, "task_id"):
            record.task_id = (request.id if request else None) or "???"
        if not hasattr(record, "task_name"):
            record.task_name = (request.task if request else None) or "???"
        return super().format(record)


def setup_logging(level: str, fmt: str, logfile: str | None = None, task_fmt: str | None = None) -> None:
    """Log to stderr (or ``logfile``) at ``level`` with ``fmt``, as Celery does with its signals.

    A ``setup_logging`` receiver takes logging over: celeriac then configures nothing.
    Otherwise the root logger gets the handler, and ``after_setup_logger`` and
    ``after_setup_task_logger`` receivers may add to it. With ``task_fmt``
    (``worker_task_log_format``), the task loggers (:data:`TASK_LOGGER` and every
    ``get_task_logger`` logger under it) write through a handler of their own with that
    format, to the same place, as Celery's worker does.
    """
    loglevel = logging.getLevelNamesMapping()[level.upper()]
    options: dict[str, Any] = {"loglevel": loglevel, "logfile": logfile, "format": fmt, "colorize": False}
    if signals.setup_logging.send(sender=None, **options):
        return
    handler: logging.StreamHandler[Any] = logging.FileHandler(logfile) if logfile else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(loglevel)
    signals.after_setup_logger.send(sender=None, logger=root, **options)
    task_logger = logging.getLogger(TASK_LOGGER)
    if task_fmt:
        task_handler = logging.StreamHandler(handler.stream)  # the same file or stderr
        task_handler.setFormatter(TaskFormatter(task_fmt))
        task_logger.handlers[:] = [task_handler]
        task_logger.propagate = False
    task_options = {**options, "format": task_fmt or fmt}
    signals.after_setup_task_logger.send(sender=None, logger=task_logger, **task_options)


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
    parser.add_argument("-f", "--logfile", help="log to this file instead of stderr")
