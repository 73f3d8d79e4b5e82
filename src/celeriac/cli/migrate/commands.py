"""``celeriac migrate`` on other files: command lines (Procfiles, units, scripts, ...) and
requirements."""

from __future__ import annotations

import re

from celeriac import _compat
from celeriac.cli.migrate.findings import RPC, Finding
from celeriac.cli.migrate.python import _apply, _Edit

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
