"""Moving the Celery project of ``celery_project/``: copy it (with a variant's files laid
over it), run ``celeriac migrate`` on it, and start its worker from its own Procfile line.

The worker runs in the project directory with nothing of the project on ``PYTHONPATH``,
as ``celery -A proj worker`` does (``-A`` finds ``proj`` in the working directory), and
through the ``celeriac`` console script when it is installed next to this Python.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.process.harness import Worker

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "celery_project"
VARIANTS = HERE / "variants"


def copy_project(dest: Path, *variants: str) -> Path:
    """The Celery project, with the files of ``variants`` laid over it, copied to ``dest``."""
    shutil.copytree(TEMPLATE, dest)
    for variant in variants:
        shutil.copytree(VARIANTS / variant, dest, dirs_exist_ok=True)
    return dest


def project_files(project: Path) -> dict[str, str]:
    """Every file of the project, by its path relative to the project."""
    return {
        path.relative_to(project).as_posix(): path.read_text()
        for path in sorted(project.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def migrate(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``celeriac migrate [options] PROJECT``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "celeriac", "migrate", *options, str(project)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def procfile_line(project: Path, process: str = "worker") -> str:
    """The command line of ``process`` in the project's Procfile."""
    for line in (project / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process!r} line in {project / 'Procfile'}")


class ProcfileWorker(Worker):
    """The worker a Procfile line starts, run in the project directory."""

    def __init__(self, env: dict[str, str], line: str, project: Path) -> None:
        super().__init__(env, [], cwd=project)
        self.line = line

    def command(self) -> list[str]:
        program, *args = shlex.split(self.line)
        script = Path(sys.executable).with_name(program)
        if script.exists():
            return [str(script), *args]
        return [sys.executable, "-m", program, *args]  # celeriac run from a source tree


@dataclass
class Broker:
    """Where a moved project keeps its messages and results (its PROJ_* variables)."""

    name: str
    url: str
    keyprefix: str = ""

    def environment(self) -> dict[str, str]:
        values = {"PROJ_BROKER_URL": self.url, "PROJ_RESULT_BACKEND": self.url}
        if self.keyprefix:
            values["PROJ_KEYPREFIX"] = self.keyprefix
        return values
