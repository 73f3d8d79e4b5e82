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
import sys
from pathlib import Path

from celeriac.cli.common import EXIT_FAILED, EXIT_OK, CommandFactory
from celeriac.cli.migrate.commands import _CommandFile, _requirements
from celeriac.cli.migrate.findings import (
    _REQUIREMENT_FILES,
    Change,
    Finding,
    Report,
    _dotted,
    _is_command_file,
    _project_files,
    _read,
)
from celeriac.cli.migrate.python import _learn, _Project, _python, _PythonFile
from celeriac.errors import ConfigurationError

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
