"""The pid file of a worker node (``celeriac worker --pidfile``), as Celery writes it.

The worker writes its master's pid (``"<pid>\\n"``, created exclusively) before it
starts serving, and removes the file when it stops, if the file still holds its pid. At
start, a file that names a running process means another worker holds it: the worker
refuses to start and names that pid. Any other file is stale (left by a worker that was
killed) and is replaced. As with Celery, these count as stale: a file without a pid, the
pid of this very process (a container restarted with the same pid 1), a pid that no
process has, and a pid of another user's process (the pid was reused).
"""

from __future__ import annotations

import contextlib
import logging
import os
from types import TracebackType

from celeriac.errors import CeleriacError, ConfigurationError

logger = logging.getLogger("celeriac.worker")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: the pid was reused (Celery's rule)
        return False
    return True


class Pidfile:
    """The pid file of one worker node; a context manager that holds it."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.pid = os.getpid()

    def read(self) -> int | None:
        """The pid in the file (None: no file, or no pid in it)."""
        try:
            with open(self.path) as file:
                text = file.read().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def acquire(self) -> None:
        """Write this process's pid; raise if a running process holds the file."""
        for _ in range(3):  # a stale file removed, then created by a worker starting beside us
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._remove_stale()
                continue
            except OSError as exc:
                raise ConfigurationError(
                    f"--pidfile {self.path}: cannot create it: {exc.strerror}; pick a directory "
                    "this user may write to"
                ) from None
            with os.fdopen(fd, "w") as file:
                file.write(f"{self.pid}\n")
            return
        raise CeleriacError(f"--pidfile {self.path}: another process keeps creating this file")

    def _remove_stale(self) -> None:
        pid = self.read()
        if pid is not None and pid != self.pid and _running(pid):
            raise CeleriacError(
                f"--pidfile {self.path} is held by process {pid}, which is running: is another worker "
                "using this pid file? Stop it first, or give this worker its own --pidfile (e.g. %n.pid)"
            )
        why = "it holds no pid" if pid is None else f"process {pid} is not running"
        logger.warning("removing the stale pid file %s (%s)", self.path, why)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def release(self) -> None:
        """Remove the file if it still holds this process's pid."""
        if self.read() == self.pid:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self) -> Pidfile:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
