"""What ``celeriac migrate`` reports and what it checks against: findings, changes, what
celeriac has, the settings and task notes, and the project's files."""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from celeriac import _compat, config
from celeriac.app import Celeriac
from celeriac.errors import ConfigurationError
from celeriac.signals import UnsentSignal
from celeriac.task import Task

# -- findings and changes -----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Finding:
    """Something to look at before (or after) the move, at ``path:line``."""

    path: str
    line: int
    feature: str
    #: what is there, e.g. ``setting beat_schedule`` or ``.s() builds a signature``
    message: str
    #: what to do (shared by the findings of one feature, so printed once, at the end)
    advice: str = ""
    blocks: bool = True

    def __str__(self) -> str:
        kind = "blocks" if self.blocks else "note"
        return f"{self.path}:{self.line}: {kind}: {self.feature}: {self.message}"


@dataclass(frozen=True)
class Change:
    """A file's text before and after the rewrite."""

    path: Path
    display: str
    old: str
    new: str

    def diff(self) -> list[str]:
        """The change as a unified diff (``a/`` and ``b/`` paths relative to the project)."""
        lines = difflib.unified_diff(
            self.old.splitlines(keepends=True),
            self.new.splitlines(keepends=True),
            f"a/{self.display}",
            f"b/{self.display}",
        )
        return [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines]


@dataclass
class Report:
    """What ``celeriac migrate`` found: the files to rewrite and the findings."""

    changes: list[Change] = field(default_factory=list)
    findings: set[Finding] = field(default_factory=set)

    @property
    def blocking(self) -> list[Finding]:
        """The findings that block the move."""
        return [finding for finding in sorted(self.findings) if finding.blocks]


# -- module names --------------------------------------------------------------------------------


def _top(module: str) -> str:
    return module.partition(".")[0]


def _celery_spelling(module: str) -> str:
    """``celeriac.x`` → ``celery.x`` (for a file whose imports were rewritten already)."""
    return "celery" + module[len("celeriac") :] if _top(module) == "celeriac" else module


# -- what celeriac has --------------------------------------------------------------------------


@functools.cache
def _module(name: str) -> object | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@functools.cache
def _has(module: str, name: str) -> bool:
    """Whether ``from <module> import <name>`` works in celeriac (a name or a submodule)."""
    target = _module(module)
    if target is None:
        return False
    if name in vars(target):
        return True
    try:
        return importlib.util.find_spec(f"{module}.{name}") is not None
    except (ImportError, ValueError):
        return False


REMOVE_IMPORT = "remove the import, or replace what it provides (docs/celery.md)"


def _feature(reason: str) -> str:
    return {
        _compat.CANVAS_MISSING: "canvas",
        _compat.BEAT_MISSING: "beat",
        _compat.REMOTE_CONTROL_MISSING: "remote control",
    }.get(reason, "import")


def _missing_module(celery_module: str) -> str:
    """Why ``celery_module`` has no celeriac counterpart, and what to do."""
    parts = celery_module.split(".")
    for end in range(len(parts), 0, -1):
        reason = _compat.MISSING_MODULES.get(".".join(parts[:end]))
        if reason is not None:
            return reason
    return REMOVE_IMPORT


def _missing_name(module: str, name: str) -> tuple[str, str, str]:
    """(feature, message, advice) for ``from <module> import <name>`` that celeriac lacks."""
    reason = _compat.MISSING.get(module, {}).get(name)
    if reason is not None:
        return _feature(reason), f"{_celery_spelling(module)}.{name} is not in celeriac", reason
    return "import", f"{_celery_spelling(module)}.{name} is not in celeriac", REMOVE_IMPORT


def _unsent(module: str, name: str) -> tuple[str, str, str] | None:
    """(feature, message, advice) for a Celery signal celeriac defines but never sends."""
    signal = vars(_module(module) or object).get(name) if module == "celeriac.signals" else None
    if not isinstance(signal, UnsentSignal):
        return None
    return "signals", f"celery.signals.{name} is never sent by celeriac", signal.instead


@functools.cache
def _app_attributes() -> frozenset[str]:
    try:
        return frozenset(dir(Celeriac("celeriac-migrate", set_as_current=False)))
    except ConfigurationError:  # a bad CELERIAC_* variable in this environment
        return frozenset(dir(Celeriac))


#: What to do instead of Celery app attributes celeriac's app lacks (others get a generic line).
APP_ATTRIBUTE_NOTES: dict[str, tuple[str, str]] = {
    "control": ("remote control", _compat.REMOTE_CONTROL_MISSING),
    "add_periodic_task": ("beat", _compat.BEAT_MISSING),
    **dict.fromkeys(
        ("on_configure", "on_after_configure", "on_after_finalize", "on_after_fork"),
        (
            "signals",
            "celeriac does not send the app signals (on_configure, on_after_configure, "
            "on_after_finalize, on_after_fork): run the code after creating the app, or use the "
            "worker signals (celeriac.signals)",
        ),
    ),
    **dict.fromkeys(
        ("connection", "connection_for_read", "connection_for_write", "pool", "producer_pool", "amqp"),
        (
            "kombu",
            "celeriac has no kombu connections or producers: send with task.apply_async() or "
            "app.send_task(), empty queues with `celeriac purge`",
        ),
    ),
    "events": (
        "events",
        "task events are not implemented: `celeriac monitor` and `celeriac top` watch queues",
    ),
    "register_task": (
        "task",
        "celeriac does not register class-based tasks: keep the class as a base (subclass app.Task) "
        "and define the task with @app.task(base=YourTask) on a function",
    ),
    "autodiscover_tasks": ("app", "list the task modules in include=[...] (or the imports setting)"),
    **dict.fromkeys(("start", "worker_main"), ("app", "run `celeriac worker -A yourmodule` instead")),
    "steps": ("worker", "worker boot steps are not supported: use the worker signals (celeriac.signals)"),
    "user_options": (
        "worker",
        "custom command-line options are not supported: use settings or the environment",
    ),
}

#: Options Celery's ``Celery(...)`` takes that are not settings, with what to do in celeriac.
CONSTRUCTOR_NOTES: dict[str, str] = {
    "task_cls": "celeriac has no app-wide task class: subclass app.Task and pass it as "
    "@app.task(base=YourTask)",
    "namespace": "pass namespace= to app.config_from_object(...) instead",
    "loader": "celeriac has no loaders: list task modules in include=[...]",
    "fixups": "celeriac has no fix-ups",
    "autofinalize": "celeriac apps need no finalizing",
    "strict_typing": "set typing=False on the tasks that should not check their arguments",
    "changes": "pass the settings as keyword arguments or with app.conf.update(...)",
    "tasks": "celeriac has no custom task registry",
    "amqp": "celeriac has no custom AMQP class",
    "events": "task events are not implemented",
    "log": "celeriac has no custom log class: configure logging with worker_log_format",
    "control": _compat.REMOTE_CONTROL_MISSING,
}
_CONSTRUCTOR_ARGUMENTS = frozenset(
    {"main", "broker", "backend", "include", "config_source", "set_as_current"}
)

#: Celery's Task attributes (class attributes or ``@task`` options); those celeriac's Task
#: lacks are reported where a class sets them.
CELERY_TASK_ATTRIBUTES = frozenset(
    {
        "name", "typing", "max_retries", "default_retry_delay", "rate_limit", "ignore_result",
        "trail", "send_events", "store_errors_even_if_ignored", "serializer", "time_limit",
        "soft_time_limit", "backend", "autoregister", "track_started", "acks_late",
        "acks_on_failure_or_timeout", "reject_on_worker_lost", "throws", "expires", "priority",
        "resultrepr_maxsize", "abstract", "store_eager_result", "Request", "Strategy",
        "autoretry_for", "dont_autoretry_for", "retry_kwargs", "retry_backoff",
        "retry_backoff_max", "retry_jitter", "queue", "compression", "pydantic",
    }
)  # fmt: skip
_TASK_DECORATOR_OPTIONS = Task.OPTIONS | {"name", "bind", "base"}

RATE_LIMIT = (
    "rate limits are not implemented in celeriac yet and celeriac refuses them: remove rate_limit; "
    "to bound how fast a task runs, route it to a queue of its own served by one worker with -c 1"
)
PICKLE = (
    "pickle works as in Celery only where 'pickle' is in accept_content (and result_accept_content "
    "for results) on every worker and client; celeriac dead-letters a message in a refused content "
    "type instead of discarding it"
)
UNKNOWN_SETTING = (
    "celeriac refuses a setting it does not know (Celery keeps it): remove it, or start the name "
    "of a helper variable in a settings module with _"
)
OLD_SETTING_NAME = (
    "celeriac reads Celery's old upper-case setting names as Celery 5 does, with a warning: rename "
    "each to the name it is read as (CELERY_ and that name in upper case with namespace='CELERY'); "
    "docs/celery.md, Old setting names"
)
TASK_ATTRIBUTE = (
    "celeriac's Task has no such attribute, so setting it changes nothing: remove it (docs/celery.md)"
)
TASK_OPTION = (
    "celeriac refuses task options it does not have: remove it (docs/celery.md lists the task options)"
)
RPC = (
    "the rpc:// result backend is not implemented and celeriac refuses it: use redis://, the SQLite "
    "file (leave result_backend unset with the SQLite broker), or no result backend"
)
_SERIALIZER_SETTINGS = frozenset(
    {"task_serializer", "result_serializer", "accept_content", "result_accept_content", "event_serializer"}
)
#: Every lower-case name a Celery configuration may hold (celeriac's, and Celery's new names).
_CELERY_NEW_NAMES = (
    frozenset(config.SETTINGS_BY_NAME)
    | frozenset(config.CELERY_IGNORED)
    | frozenset(config.CELERY_REFUSED)
    | frozenset(config.CELERY_OLD_NAMES.values())
)


def _setting_finding(name: str, shown: str) -> tuple[str, str, str, bool] | None:
    """(feature, message, advice, blocks) for a setting celeriac does not simply take; None if it does."""
    if name.startswith("beat_"):  # beat_schedule is a setting: the worker warns that it will not run
        return "beat", f"setting {shown}", _compat.BEAT_MISSING, True
    if name in config.SETTINGS_BY_NAME:
        return None
    if name in ("task_default_rate_limit", "worker_disable_rate_limits"):
        return "rate limit", f"setting {shown}", RATE_LIMIT, name == "task_default_rate_limit"
    if name in config.CELERY_REFUSED:
        return "setting", f"setting {shown} is refused", config.CELERY_REFUSED[name], True
    if name in config.CELERY_IGNORED:
        return "setting", f"setting {shown} is accepted and ignored", config.CELERY_IGNORED[name], False
    return "setting", f"unknown setting {shown}{config.suggest(name)}", UNKNOWN_SETTING, True


# -- the project's files ------------------------------------------------------------------------

_SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", "node_modules", "__pycache__",
     ".mypy_cache", ".pytest_cache", ".ruff_cache", "build", "dist", "site-packages"}
)  # fmt: skip
_COMMAND_FILE_NAMES = (
    "Procfile",
    "Makefile",
    "GNUmakefile",
    "makefile",
    "Dockerfile",
    "Containerfile",
    ".env",
)
_COMMAND_SUFFIXES = frozenset(
    {".sh", ".bash", ".zsh", ".service", ".yml", ".yaml", ".toml", ".ini", ".conf", ".cfg", ".env", ".mk"}
)
_REQUIREMENT_FILES = re.compile(r"^(requirements.*\.(txt|in)|pyproject\.toml|setup\.cfg|Pipfile)$")


def _project_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(
            d
            for d in subdirs
            if d not in _SKIP_DIRS
            and not d.endswith(".egg-info")
            and not (Path(directory, d) / "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            yield Path(directory, name)


def _is_command_file(path: Path, text: str) -> bool:
    name = path.name
    if name.startswith(_COMMAND_FILE_NAMES) or path.suffix in _COMMAND_SUFFIXES or name.endswith(".env"):
        return True
    first = text.split("\n", 1)[0]
    return not path.suffix and first.startswith("#!") and first.rstrip().endswith("sh")


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _dotted(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    if parts and parts[0] == "src":
        parts.pop(0)
    return ".".join(parts)
