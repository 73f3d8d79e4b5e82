"""Real worker processes for tests: start, watch the log, stop, and always clean up by pid."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Wait for ``predicate()`` to become true, checking every few milliseconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


class Runs:
    """The task-run log the tasks of proc_app append to."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[tuple[str, int, float]]:
        if not self.path.exists():
            return []
        out = []
        # only complete lines: a task may be writing its line while this reads the file
        for line in self.path.read_text().split("\n")[:-1]:
            label, pid, at = line.split()
            out.append((label, int(pid), float(at)))
        return out

    def count(self, label: str | None = None) -> int:
        return sum(1 for entry in self.entries() if label is None or entry[0] == label)

    def per_label(self) -> Counter[str]:
        return Counter(label for label, _, _ in self.entries())

    def pids(self, label: str) -> list[int]:
        return [pid for lab, pid, _ in self.entries() if lab == label]

    def wait(self, count: int, label: str | None = None, timeout: float = 20.0) -> None:
        wait_until(lambda: self.count(label) >= count, timeout, f"{count} runs of {label or 'any task'}")


class Worker:
    """A ``celeriac worker`` subprocess in its own session (process group)."""

    def __init__(self, env: dict[str, str], args: list[str], cwd: Path = ROOT) -> None:
        self.env = env
        self.args = args
        self.cwd = cwd
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None
        self.child_pids: set[int] = set()

    def command(self) -> list[str]:
        """The command line this process runs."""
        return [sys.executable, "-m", "celeriac", "worker", "-A", "proc_app", "-l", "info", *self.args]

    def start(self) -> Worker:
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                found = re.search(r"started child \d+ \(pid (\d+)\)", line)
                if found:
                    self.child_pids.add(int(found.group(1)))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20.0, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``pattern`` matched ``count`` log lines; return the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [m for line in self.lines if (m := regex.search(line))]
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc is not None and self.proc.poll() is not None and not matches):
                    raise AssertionError(
                        f"log never showed {pattern!r} x{count}; log:\n" + "\n".join(self.lines[-60:])
                    )
                self._cond.wait(min(remaining, 0.2))

    def wait_ready(self, children: int, timeout: float = 20.0) -> Worker:
        self.wait_for(r"child \d+ \(pid \d+\) ready", timeout, count=children)
        return self

    def send(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        """Kill the whole process group and every child seen, by pid."""
        if self.proc is None:
            return
        pids = {self.proc.pid, *self.child_pids}
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
