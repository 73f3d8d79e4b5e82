"""``celeriac migrate PATH``: move a Celery project to celeriac, and list what still differs.

The move itself is mechanical, so this command does it: Celery's (and kombu's
``Queue``/``Exchange``) import lines become celeriac's (:data:`celeriac._compat.CELERY_MODULES`
says which module is which), and ``celery -A proj worker ...`` command lines in Procfiles,
systemd units, compose files, shell scripts and Makefiles become ``celeriac -A proj
worker ...``. An import line is rewritten only when celeriac has every name it imports,
and a command line only when celeriac has the command, so nothing is rewritten into
something that fails later. The changes are printed as a unified diff and written only
with ``--write``; a second run finds nothing more to rewrite.

Then every file is scanned for what celeriac lacks or does differently (canvas, periodic
tasks, rate limits, remote control, ``rpc://``, pickle, settings celeriac does not know,
signals it does not send, ...). Each finding names ``file:line``, the feature and what
to do; findings that stop the project from running as it did *block* the move, the
others are notes.

Python is read with :mod:`ast` (imports, settings, task options, calls), never with
regular expressions; only the other files, which have no grammar in common, are read
with regular expressions.

Exit codes: 0 nothing blocks the move; 1 something does (the findings say what);
2 bad usage (no such path).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from celeriac import _compat, config
from celeriac.app import Celeriac
from celeriac.cli.common import EXIT_FAILED, EXIT_OK, CommandFactory
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


# -- Python: the project model (first pass) -----------------------------------------------------


@dataclass
class _PythonFile:
    path: Path
    display: str
    dotted: str
    is_package: bool
    source: str
    tree: ast.Module


@dataclass
class _Project:
    """What one file's checks need to know about the others."""

    #: module → names bound at module level to ``Celery(...)``
    apps: dict[str, set[str]] = field(default_factory=dict)
    #: module read by ``config_from_object('module')`` → its namespace (None: no namespace)
    config_modules: dict[str, str | None] = field(default_factory=dict)
    #: (module, class name) read by ``config_from_object(Class)`` → namespace
    config_classes: dict[tuple[str, str], str | None] = field(default_factory=dict)
    #: namespace of ``config_from_object('django.conf:settings', namespace=...)``, if any
    django_namespace: str | None = None
    #: the module DJANGO_SETTINGS_MODULE names, if the code sets it
    django_settings: str | None = None


def _is_app_call(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return name in ("Celery", "Celeriac")


def _string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _learn(project: _Project, module: _PythonFile) -> None:
    for node in module.tree.body:
        if isinstance(node, ast.Assign) and _is_app_call(node.value):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            project.apps.setdefault(module.dotted, set()).update(names)
    for node in ast.walk(module.tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == "config_from_object" and node.args:
            _learn_config_source(project, module, node)
        elif node.func.attr == "setdefault" and _string(node.args[0] if node.args else None) == (
            "DJANGO_SETTINGS_MODULE"
        ):
            project.django_settings = _string(node.args[1]) if len(node.args) > 1 else None


def _learn_config_source(project: _Project, module: _PythonFile, call: ast.Call) -> None:
    source, namespace = call.args[0], _string(_keyword(call, "namespace"))
    target = _string(source)
    if target == "django.conf:settings":
        project.django_namespace = namespace or ""
    elif target is not None and ":" in target:  # 'proj.config:Settings', a class
        name, _, attr = target.partition(":")
        project.config_classes[(name, attr)] = namespace
    elif target is not None:
        project.config_modules[target] = namespace
    elif isinstance(source, ast.Name):
        project.config_classes[(module.dotted, source.id)] = namespace


def _config_namespace(project: _Project, module: _PythonFile) -> tuple[bool, str | None]:
    """Whether ``module`` is read as settings, and with which namespace."""
    if module.dotted in project.config_modules:
        return True, project.config_modules[module.dotted]
    if module.path.name == "celeryconfig.py":
        return True, None
    if project.django_namespace is None:
        return False, None
    namespace = project.django_namespace or None
    named = project.django_settings
    if named is not None:  # that module, or its siblings in a settings package (base.py, ...)
        package = named.rpartition(".")[0]
        sibling = module.path.parent.name == "settings" and module.dotted.rpartition(".")[0] == package
        return module.dotted == named or module.dotted.startswith(named + ".") or sibling, namespace
    in_settings = module.path.name == "settings.py" or module.path.parent.name == "settings"
    return in_settings, namespace


# -- Python: rewriting imports ------------------------------------------------------------------


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


class _Offsets:
    """(line, UTF-8 column) as ast reports them → offsets into the text."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", source)]

    def __call__(self, line: int, col: int) -> int:
        start = self.starts[line - 1]
        text = self.source[start : start + col]  # col counts bytes: at least that many characters
        return start + len(text.encode("utf-8")[:col].decode("utf-8", "ignore"))

    def span(self, node: ast.stmt) -> tuple[int, int]:
        assert node.end_lineno is not None and node.end_col_offset is not None
        return self(node.lineno, node.col_offset), self(node.end_lineno, node.end_col_offset)


def _top(module: str) -> str:
    return module.partition(".")[0]


def _celery_spelling(module: str) -> str:
    """``celeriac.x`` → ``celery.x`` (for a file whose imports were rewritten already)."""
    return "celery" + module[len("celeriac") :] if _top(module) == "celeriac" else module


class _Imports:
    """Rewrites one file's Celery and kombu imports and reports those it cannot rewrite."""

    def __init__(self, file: _PythonFile, offsets: _Offsets, findings: set[Finding]) -> None:
        self.file = file
        self.offsets = offsets
        self.findings = findings
        self.edits: list[_Edit] = []

    def report(self, line: int, feature: str, message: str, advice: str = "") -> None:
        self.findings.add(Finding(self.file.display, line, feature, message, advice))

    def plan(self) -> list[_Edit]:
        for node in ast.walk(self.file.tree):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                if _top(node.module) == "kombu":
                    self._kombu(node)
                elif _top(node.module) in ("celery", "celeriac"):
                    self._from(node)
            elif isinstance(node, ast.Import):
                self._import(node)
        return self.edits

    def _from(self, node: ast.ImportFrom) -> None:
        assert node.module is not None
        celery_module = _celery_spelling(node.module)
        target = _compat.CELERY_MODULES.get(celery_module)
        if target is None or _module(target) is None:
            self.report(
                node.lineno,
                "import",
                f"{celery_module} has no celeriac counterpart",
                _missing_module(celery_module),
            )
            return
        missing = [a.name for a in node.names if a.name != "*" and not _has(target, a.name)]
        for name in missing:
            self.report(node.lineno, *_missing_name(target, name))
        for alias in node.names:
            if (unsent := _unsent(target, alias.name)) is not None:
                self.report(node.lineno, *unsent)
        if not missing and node.module != target:
            self._replace_module(node, target)

    def _replace_module(self, node: ast.ImportFrom, target: str) -> None:
        assert node.module is not None
        start, end = self.offsets.span(node)
        text = self.file.source[start:end]
        match = re.match(r"from\s+" + re.escape(node.module) + r"(?=\s)", text)
        if match is not None:
            self.edits.append(_Edit(start, start + match.end(), f"from {target}"))
        else:  # unusual spacing inside the dotted name: write the statement anew
            new = ast.ImportFrom(module=target, names=node.names, level=0)
            self.edits.append(_Edit(start, end, ast.unparse(new)))

    def _kombu(self, node: ast.ImportFrom) -> None:
        if node.module == "kombu.common" and any(a.name == "Broadcast" for a in node.names):
            self.report(
                node.lineno,
                "queues",
                "kombu.common.Broadcast",
                "broadcast queues are not implemented in celeriac: send one task to each worker's own queue",
            )
        if node.module != "kombu":
            return
        ours = [a for a in node.names if a.name in _compat.KOMBU_NAMES]
        theirs = [a for a in node.names if a.name not in _compat.KOMBU_NAMES]
        if not ours:
            return
        if not theirs:
            self._replace_module(node, "celeriac")
            return
        start, end = self.offsets.span(node)
        line_start = self.offsets(node.lineno, 0)
        indent = self.file.source[line_start:start]
        joint = "\n" + indent if not indent.strip() else "; "
        new = [ast.ImportFrom("celeriac", ours, 0), ast.ImportFrom("kombu", theirs, 0)]
        self.edits.append(_Edit(start, end, joint.join(ast.unparse(n) for n in new)))

    def _import(self, node: ast.Import) -> None:
        if not any(_top(a.name) == "celery" for a in node.names):
            return
        names: list[ast.alias] = []
        for alias in node.names:
            if _top(alias.name) != "celery":
                names.append(alias)
                continue
            target = _compat.CELERY_MODULES.get(alias.name)
            if target is None or _module(target) is None:
                self.report(
                    node.lineno,
                    "import",
                    f"{alias.name} has no celeriac counterpart",
                    _missing_module(alias.name),
                )
                return
            # `import celery.result` binds `celery`: keep that name bound, to celeriac
            names.append(ast.alias(target, alias.asname or ("celery" if target == "celeriac" else None)))
        unbound = any(a.asname is None and _top(a.name) == "celeriac" for a in names)
        if unbound and not any(a.asname == "celery" for a in names):
            names.append(ast.alias("celeriac", "celery"))
        start, end = self.offsets.span(node)
        self.edits.append(_Edit(start, end, ast.unparse(ast.Import(names))))


def _apply(source: str, edits: Iterable[_Edit]) -> str:
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        source = source[: edit.start] + edit.text + source[edit.end :]
    return source


# -- Python: scanning for differences -----------------------------------------------------------


def _names_bound_by_imports(tree: ast.Module) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Local names bound to celeriac modules, and to names imported from them."""
    modules: dict[str, str] = {}
    names: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _compat.CELERY_MODULES.get(_celery_spelling(alias.name))
                if target is not None and _top(alias.name) in ("celery", "celeriac"):
                    modules[alias.asname or _top(alias.name)] = target if alias.asname else "celeriac"
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            target = _compat.CELERY_MODULES.get(_celery_spelling(node.module))
            if target is None or _top(node.module) not in ("celery", "celeriac"):
                continue
            for alias in node.names:
                submodule = _compat.CELERY_MODULES.get(f"{_celery_spelling(node.module)}.{alias.name}")
                if submodule is not None:
                    modules[alias.asname or alias.name] = submodule
                else:
                    names[alias.asname or alias.name] = (target, alias.name)
    return modules, names


def _resolve_relative(file: _PythonFile, node: ast.ImportFrom) -> str:
    package = file.dotted if file.is_package else file.dotted.rpartition(".")[0]
    parts = package.split(".") if package else []
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _app_names(file: _PythonFile, project: _Project) -> set[str]:
    names = set(project.apps.get(file.dotted, ()))
    for node in ast.walk(file.tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve_relative(file, node) if node.level else node.module or ""
            apps = project.apps.get(source, set())
            names.update(alias.asname or alias.name for alias in node.names if alias.name in apps)
    return names


def _is_task_class(node: ast.ClassDef) -> bool:
    for base in node.bases:
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
        if name.endswith("Task"):
            return True
    return False


def _is_task_decorator(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "task") or (
        isinstance(func, ast.Name) and func.id in ("shared_task", "task")
    )


def _mentions(node: ast.AST, text: str) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == text for n in ast.walk(node))


class _Scanner(ast.NodeVisitor):
    """Reports, in one Python file, each use of what celeriac lacks or does differently."""

    def __init__(self, file: _PythonFile, project: _Project, findings: set[Finding]) -> None:
        self.file = file
        self.project = project
        self.findings = findings
        self.modules, self.imported = _names_bound_by_imports(file.tree)
        self.apps = _app_names(file, project)
        self.config_classes = {
            name: namespace
            for (module, name), namespace in project.config_classes.items()
            if module == file.dotted
        }

    def report(
        self, node: ast.AST, feature: str, message: str, advice: str = "", blocks: bool = True
    ) -> None:
        line = getattr(node, "lineno", 1)
        self.findings.add(Finding(self.file.display, line, feature, message, advice, blocks))

    def scan(self) -> None:
        is_config, namespace = _config_namespace(self.project, self.file)
        if is_config:
            self._settings_body(self.file.tree.body, namespace)
        self.visit(self.file.tree)

    # -- settings

    def setting(self, node: ast.AST, name: str, value: ast.AST | None, shown: str | None = None) -> None:
        shown = shown or name
        new = config.CELERY_OLD_NAMES.get(name)
        if new is not None:  # read as the new name, with a warning
            self.report(node, "setting", f"old setting name {shown}, read as {new}", OLD_SETTING_NAME, False)
            name = new
        finding = _setting_finding(name, shown)
        if finding is not None:
            feature, message, advice, blocks = finding
            self.report(node, feature, message, advice, blocks)
        if value is None:
            return
        if name in _SERIALIZER_SETTINGS and _mentions(value, "pickle"):
            self.report(node, "pickle", f"setting {shown} names pickle", PICKLE, blocks=False)
        if name == "task_annotations" and _mentions(value, "rate_limit"):
            self.report(node, "rate limit", f"setting {shown} sets rate_limit", RATE_LIMIT)

    def _settings_body(self, body: list[ast.stmt], namespace: str | None) -> None:
        """Module- or class-level assignments read as settings (config_from_object)."""
        for node in body:
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name) and not target.id.startswith("_"):
                    self._settings_name(node, target.id, node.value, namespace)

    def _settings_name(self, node: ast.AST, name: str, value: ast.AST | None, namespace: str | None) -> None:
        """A name read as ``config_from_object`` reads it: lower-case names and Celery's old
        names; with a namespace, ``<NAMESPACE>_<NEW NAME>`` and the old names Celery reads there."""
        old = name in config.CELERY_OLD_NAMES
        if not namespace:
            if name.islower() or old:
                self.setting(node, name, value)
            return
        prefix = f"{namespace}_"
        stripped = name[len(prefix) :].lower() if name.startswith(prefix) else None
        if stripped is not None and (stripped in _CELERY_NEW_NAMES or not old):
            self.setting(node, stripped, value, shown=name)
        elif old and (stripped is not None or config.CELERY_OLD_NAMES[name] in _CELERY_NEW_NAMES):
            self.setting(node, name, value)

    def _settings_call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg is not None:
                self.setting(keyword, keyword.arg, keyword.value)
        for arg in node.args:
            if isinstance(arg, ast.Dict):
                for key, value in zip(arg.keys, arg.values, strict=True):
                    name = _string(key)
                    if key is not None and name is not None:
                        self.setting(key, name, value)

    # -- visitors

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            self._method_call(node, func)
        if _is_app_call(node):
            self._app_call(node)
        for keyword in node.keywords:
            if keyword.arg == "serializer" and _string(keyword.value) == "pickle":
                self.report(keyword, "pickle", "serializer='pickle'", PICKLE, blocks=False)
        self.generic_visit(node)

    def _method_call(self, node: ast.Call, func: ast.Attribute) -> None:
        attr = func.attr
        if attr == "revoke":
            self.report(node, "remote control", ".revoke()", _compat.REMOTE_CONTROL_MISSING)
        elif attr == "add_periodic_task":
            self.report(node, "beat", "add_periodic_task()", _compat.BEAT_MISSING)
        elif attr == "update" and isinstance(func.value, ast.Attribute) and func.value.attr == "conf":
            self._settings_call(node)
        elif attr == "config_from_object" and node.args and isinstance(node.args[0], ast.Dict):
            self._settings_call(ast.Call(func, [node.args[0]], []))

    def _app_call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg is None or keyword.arg in _CONSTRUCTOR_ARGUMENTS:
                continue
            if keyword.arg in CONSTRUCTOR_NOTES:
                self.report(keyword, "app", f"Celery({keyword.arg}=...)", CONSTRUCTOR_NOTES[keyword.arg])
            else:
                self.setting(keyword, keyword.arg, keyword.value)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        value = node.value
        if isinstance(value, ast.Name) and value.id in self.modules:
            module = self.modules[value.id]
            if _module(module) is not None and not _has(module, node.attr):
                self.report(node, *_missing_name(module, node.attr))
            elif (unsent := _unsent(module, node.attr)) is not None:
                self.report(node, *unsent)
        if isinstance(value, ast.Name) and value.id in self.apps:
            self._app_attribute(node)
        elif node.attr == "control" and (
            (isinstance(value, ast.Name) and value.id == "current_app")
            or (isinstance(value, ast.Attribute) and value.attr in ("app", "current_app"))
        ):
            self.report(node, "remote control", "app.control", _compat.REMOTE_CONTROL_MISSING)
        self.generic_visit(node)

    def _app_attribute(self, node: ast.Attribute) -> None:
        if node.attr in _app_attributes():
            return
        feature, advice = APP_ATTRIBUTE_NOTES.get(
            node.attr, ("app", "celeriac's app has no such attribute: see docs/celery.md")
        )
        self.report(node, feature, f"app.{node.attr}", advice)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and node.id in self.imported:
            module, name = self.imported[node.id]
            if _module(module) is not None and not _has(module, name):
                self.report(node, *_missing_name(module, name))
            elif (unsent := _unsent(module, name)) is not None:
                self.report(node, *unsent)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._assigned(node, target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assigned(node, node.target)
        self.generic_visit(node)

    def _assigned(self, node: ast.Assign | ast.AnnAssign, target: ast.expr) -> None:
        """``app.conf.name = ...`` and ``app.conf['name'] = ...``."""
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
            if target.value.attr == "conf":
                self.setting(node, target.attr, node.value)
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute):
            name = _string(target.slice)
            if target.value.attr == "conf" and name is not None:
                self.setting(node, name, node.value)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value.startswith("rpc://"):
            self.report(node, "rpc://", "the rpc:// result backend", RPC)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if node.name in self.config_classes:
            self._settings_body(node.body, self.config_classes[node.name])
        if _is_task_class(node):
            self._task_class_body(node)
        self._decorators(node.decorator_list)
        self.generic_visit(node)

    def _task_class_body(self, node: ast.ClassDef) -> None:
        for statement in node.body:
            if not isinstance(statement, ast.Assign):
                continue
            for target in statement.targets:
                name = target.id if isinstance(target, ast.Name) else ""
                if name == "rate_limit":
                    self.report(statement, "rate limit", f"{node.name}.rate_limit", RATE_LIMIT)
                elif name in CELERY_TASK_ATTRIBUTES and not hasattr(Task, name):
                    self.report(statement, "task", f"{node.name}.{name}", TASK_ATTRIBUTE, blocks=False)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._decorators(node.decorator_list)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def _decorators(self, decorators: list[ast.expr]) -> None:
        for decorator in decorators:
            if not _is_task_decorator(decorator):
                continue
            assert isinstance(decorator, ast.Call)
            for keyword in decorator.keywords:
                if keyword.arg == "rate_limit":
                    self.report(keyword, "rate limit", "@task(rate_limit=...)", RATE_LIMIT)
                elif keyword.arg is not None and keyword.arg not in _TASK_DECORATOR_OPTIONS:
                    hint = config.did_you_mean(keyword.arg, _TASK_DECORATOR_OPTIONS)
                    self.report(keyword, "task", f"@task option {keyword.arg!r}{hint}", TASK_OPTION)


def _python(file: _PythonFile, project: _Project, report: Report) -> None:
    imports = _Imports(file, _Offsets(file.source), report.findings)
    new = _apply(file.source, imports.plan())
    _Scanner(file, project, report.findings).scan()
    if new != file.source:
        report.changes.append(Change(file.path, file.display, file.source, new))


# -- other files: command lines -----------------------------------------------------------------

#: ``celery`` (or, on a line moved already, ``celeriac``) as a program name: a word of its own
_PROGRAM = re.compile(r"(?<![\w.$-])(?:celery|celeriac)(?![\w./:-])")
_TOKEN = re.compile(r"[^\s\"',\[\]\\]+")
_YAML_ITEM = re.compile(r"[ \t]*-[ \t]+(.*)")
_SHELL_SEPARATOR = re.compile(r"&&|\|\||[;|&]")
_GLOBAL_WITH_VALUE = frozenset(
    {"-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir"}
)
_GLOBAL_FLAGS = frozenset({"-C", "--no-color", "-q", "--quiet", "--skip-checks", "--version", "--help", "-h"})
#: Celery's commands that celeriac has, under the same name.
SUPPORTED_COMMANDS = frozenset({"worker", "purge", "status", "call", "result"})
#: celeriac's own commands Celery has under the same name but with another meaning.
_CELERIAC_COMMANDS = frozenset({"inspect", "migrate"})
#: Celery's commands celeriac lacks, with what to do instead.
UNSUPPORTED_COMMANDS: dict[str, tuple[str, str]] = {
    "beat": ("beat", _compat.BEAT_MISSING),
    "multi": (
        "multi",
        "celery multi is not available: run one `celeriac worker` per node under systemd, supervisor "
        "or your container runtime (-n/--hostname names each)",
    ),
    "events": (
        "events",
        "task events are not implemented: `celeriac top` and `celeriac monitor` watch queues",
    ),
    "flower": (
        "events",
        "Flower reads Celery's task events, which celeriac does not send: `celeriac monitor --web` serves "
        "a dashboard and Prometheus metrics",
    ),
    "inspect": ("remote control", _compat.REMOTE_CONTROL_MISSING),
    "control": ("remote control", _compat.REMOTE_CONTROL_MISSING),
    "shell": ("command", "celery shell is not available: start Python and import your app"),
    "report": ("command", "celery report is not available: run `celeriac --version`"),
    "migrate": (
        "command",
        "celery migrate (moving messages between brokers) is not available; `celeriac migrate` "
        "rewrites code instead",
    ),
    **dict.fromkeys(
        ("amqp", "list", "graph", "logtool", "upgrade"),
        ("command", "this celery command is not available in celeriac"),
    ),
}
#: worker options that name a feature celeriac lacks, with what to do.
WORKER_OPTION_NOTES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        ("-B", "--beat", "-S", "--scheduler", "-s", "--schedule-filename"), ("beat", _compat.BEAT_MISSING)
    ),
    **dict.fromkeys(
        ("-E", "--task-events", "--events"),
        (
            "events",
            "task events are not implemented: the worker starts with a warning and sends none, so "
            "Flower and `celery events` see nothing; `celeriac monitor` watches queues and workers",
        ),
    ),
    "--autoscale": ("worker", "autoscaling is not implemented: give a fixed -c/--concurrency"),
    **dict.fromkeys(
        ("-D", "--detach"),
        (
            "worker",
            "the worker does not detach: run it in the foreground under systemd, supervisor or a container",
        ),
    ),
}
#: worker options the worker takes with a warning (the others above refuse to start)
_WORKER_OPTIONS_WARNED = frozenset({"-E", "--task-events", "--events"})
_POOLS = frozenset({"prefork", "solo"})
POOL = (
    "celeriac runs tasks in prefork child processes (-P prefork, the default) or, for debugging, in the "
    "worker process itself (-P solo); gevent, eventlet and thread pools are not implemented"
)
UNKNOWN_COMMAND = (
    "migrate cannot tell which command this line runs (a variable?): check it by hand; celeriac has "
    + ", ".join(sorted(SUPPORTED_COMMANDS))
)
PROGRAM_VARIABLE = (
    "point the variable at the celeriac program (installed beside celery) where it runs a command "
    "celeriac has: " + ", ".join(sorted(SUPPORTED_COMMANDS))
)
DEPENDENCY = "depend on celeriac instead (keep kombu only if your own code still imports it)"
_PROGRAM_VARIABLE = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(\w+)=[\"']?(?:\S*/)?celery[\"']?[ \t]*$", re.MULTILINE
)
_MULTI = re.compile(r"\bmulti[ \t]+(?:start|stop|stopwait|restart|kill|show|names|expand|get)\b")
_RPC = re.compile(r"\brpc://")
_REQUIREMENT = re.compile(
    r"^[ \t]*[\"']?celery(?:\[[^\]]*\])?[ \t]*(?:[<>=!~;\"',#]|$)", re.MULTILINE | re.IGNORECASE
)


def _following_words(text: str, position: int) -> list[str]:
    """The words of the command line that goes on at ``position``: to the end of the line
    (or of the shell command: ``&&``, ``;``, ``|``), across backslash continuations, or
    through a YAML list (``- celery`` / ``- -A`` / ...)."""
    words: list[str] = []
    lines = text[position : position + 4096].split("\n")
    first = lines[0]
    index = 0
    while first.rstrip().endswith("\\") and index + 1 < len(lines):
        index += 1
        first = first.rstrip()[:-1] + " " + lines[index]
    words.extend(_TOKEN.findall(_SHELL_SEPARATOR.split(first, maxsplit=1)[0]))
    if not words:
        for line in lines[1:]:
            item = _YAML_ITEM.fullmatch(line.rstrip("\r"))
            if item is None:
                break
            words.extend(_TOKEN.findall(item.group(1)))
    return words[:40]


def _command(words: list[str]) -> tuple[bool, str | None, list[str]]:
    """(is it a celery command line, its command or None, the words after the command)."""
    index = 0
    while index < len(words):
        word = words[index]
        if word in _GLOBAL_WITH_VALUE:
            index += 2
        elif word.split("=", 1)[0] in _GLOBAL_WITH_VALUE or word in _GLOBAL_FLAGS or word.startswith("-A"):
            index += 1
        else:
            break
    if index >= len(words):
        return index > 0, None, []
    command = words[index]
    known = command in SUPPORTED_COMMANDS or command in UNSUPPORTED_COMMANDS or command.startswith("$")
    return (index > 0 or known), command, words[index + 1 :]


class _CommandFile:
    """Rewrites and scans one file of command lines."""

    def __init__(self, display: str, text: str, findings: set[Finding]) -> None:
        self.display = display
        self.text = text
        self.findings = findings
        self.starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def line(self, position: int) -> int:
        low, high = 0, len(self.starts)
        while low + 1 < high:
            middle = (low + high) // 2
            if self.starts[middle] <= position:
                low = middle
            else:
                high = middle
        return low + 1

    def report(
        self, position: int, feature: str, message: str, advice: str = "", blocks: bool = True
    ) -> None:
        self.findings.add(Finding(self.display, self.line(position), feature, message, advice, blocks))

    def rewrite(self) -> str:
        edits = [edit for match in _PROGRAM.finditer(self.text) if (edit := self._program(match)) is not None]
        self._scan()
        return _apply(self.text, edits)

    def _program(self, match: re.Match[str]) -> _Edit | None:
        program = match.group()
        is_command, command, rest = _command(_following_words(self.text, match.end()))
        if not is_command or (program == "celeriac" and command in _CELERIAC_COMMANDS):
            return None
        if command == "worker":
            self._worker_options(match.start(), program, rest)
        if command is None or command in SUPPORTED_COMMANDS:
            return _Edit(match.start(), match.end(), "celeriac") if program == "celery" else None
        if command in UNSUPPORTED_COMMANDS:
            feature, advice = UNSUPPORTED_COMMANDS[command]
            self.report(match.start(), feature, f"{program} {command}", advice)
        else:
            self.report(
                match.start(), "command", f"{program} {command}: which command is it?", UNKNOWN_COMMAND
            )
        return None

    def _worker_options(self, position: int, program: str, words: list[str]) -> None:
        for index, word in enumerate(words):
            option, _, value = word.partition("=")
            if option in WORKER_OPTION_NOTES:
                feature, advice = WORKER_OPTION_NOTES[option]
                blocks = option not in _WORKER_OPTIONS_WARNED
                self.report(position, feature, f"{program} worker {option}", advice, blocks)
            elif option in ("-P", "--pool"):
                pool = value or (words[index + 1] if index + 1 < len(words) else "")
                if pool and pool not in _POOLS and not pool.startswith("$"):
                    self.report(position, "worker", f"{program} worker -P {pool}", POOL)

    def _scan(self) -> None:
        for match in _RPC.finditer(self.text):
            self.report(match.start(), "rpc://", "the rpc:// result backend", RPC)
        for match in _MULTI.finditer(self.text):
            self.report(match.start(), "multi", "celery multi", UNSUPPORTED_COMMANDS["multi"][1])
        for match in _PROGRAM_VARIABLE.finditer(self.text):
            message = f"{match.group(1)} names the celery program"
            self.report(match.start(), "command", message, PROGRAM_VARIABLE, blocks=False)


def _requirements(display: str, text: str, findings: set[Finding]) -> None:
    for match in _REQUIREMENT.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        findings.add(Finding(display, line, "dependency", "depends on celery", DEPENDENCY, blocks=False))


# -- the whole project --------------------------------------------------------------------------


def migrate(root: Path) -> Report:
    """Plan the move of the project at ``root`` (a directory or one file); writes nothing."""
    report = Report()
    base = root if root.is_dir() else root.parent
    python: list[_PythonFile] = []
    for path in _project_files(root):
        display = path.relative_to(base).as_posix()
        text = _read(path)
        if text is None:
            continue
        if path.suffix == ".py":
            file = _parse(path, display, text, report)
            if file is not None:
                python.append(file)
            continue
        if _REQUIREMENT_FILES.match(path.name):
            _requirements(display, text, report.findings)
        if _is_command_file(path, text):
            new = _CommandFile(display, text, report.findings).rewrite()
            if new != text:
                report.changes.append(Change(path, display, text, new))
    project = _Project()
    for file in python:
        _learn(project, file)
    for file in python:
        _python(file, project, report)
    report.changes.sort(key=lambda change: change.display)
    return report


def _parse(path: Path, display: str, text: str, report: Report) -> _PythonFile | None:
    try:
        tree = ast.parse(text, filename=display)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None) or 1
        message = f"cannot parse this file ({exc})"
        report.findings.add(Finding(display, line, "python", message, "check it by hand", blocks=False))
        return None
    rel = Path(display)
    return _PythonFile(path, display, _dotted(rel), rel.name == "__init__.py", text, tree)


# -- the command --------------------------------------------------------------------------------


def _summary(report: Report, write: bool) -> list[str]:
    count = len(report.changes)
    if not count:
        lines = ["no import or command line to rewrite"]
    elif write:
        lines = [f"rewrote {count} file(s)"]
    else:
        lines = [f"{count} file(s) to rewrite: run again with --write to apply the diff above"]
    blocking = len(report.blocking)
    notes = len(report.findings) - blocking
    if blocking:
        lines.append(f"{blocking} finding(s) block the move, {notes} note(s): see each line and [what to do]")
    else:
        lines.append(f"nothing blocks the move ({notes} note(s))")
    return lines


def _findings(report: Report) -> list[str]:
    """One line per finding, each with the number of its advice; then the advice, once each."""
    advice: dict[str, int] = {}
    lines = []
    for finding in sorted(report.findings):
        number = advice.setdefault(finding.advice, len(advice) + 1) if finding.advice else None
        lines.append(f"{finding} [{number}]\n" if number else f"{finding}\n")
    if advice:
        lines.append("\n")
        lines.extend(f"[{number}] {text}\n" for text, number in advice.items())
    return lines


def cmd_migrate(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.exists():
        raise ConfigurationError(f"migrate {args.path}: no such file or directory")
    report = migrate(root)
    out = sys.stdout
    for change in report.changes:
        out.writelines(change.diff())
    if args.write:
        for change in report.changes:
            change.path.write_bytes(change.new.encode("utf-8"))
    if report.changes and report.findings:
        out.write("\n")
    out.writelines(_findings(report))
    for line in _summary(report, args.write):
        out.write(f"celeriac migrate: {line}\n")
    return EXIT_FAILED if report.blocking else EXIT_OK


_HELP = """\
Move a Celery project to celeriac. Rewrites Celery's and kombu's import lines
(`from celery import Celery` -> `from celeriac import Celery`, `from kombu import
Queue` -> `from celeriac import Queue`, `import celery` -> `import celeriac as celery`)
and celery command lines in Procfiles, systemd units, compose files, shell scripts,
Makefiles and Dockerfiles (`celery -A proj worker` -> `celeriac -A proj worker`),
only where celeriac has every name or command; prints the change as a unified diff
and writes it only with --write. Then lists, as file:line, each use of a feature
celeriac lacks or treats differently (canvas, periodic tasks, rate limits, remote
control, rpc://, pickle, unknown settings, signals, ...) and what to do. Exit code:
0 nothing blocks the move, 1 something does, 2 bad usage."""


def add_commands(command: CommandFactory) -> None:
    """Register ``migrate`` (``command`` makes a subparser)."""
    parser = command(
        "migrate",
        "Rewrite a Celery project's imports and command lines for celeriac, and list what still differs.",
        epilog=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", help="the project directory (or one file)")
    parser.add_argument(
        "--write", action="store_true", help="write the rewritten files (default: print the diff)"
    )
    parser.set_defaults(func=cmd_migrate)
