"""Reading a process's own memory cheaply enough to do it after every task.

``rss_kib`` reads ``/proc/self/statm`` through a file descriptor kept open
(one ``pread``, about a microsecond). ``uss_kib`` (pages not shared with any
other process, i.e. not with the master) needs ``/proc/self/smaps_rollup``,
which costs ~0.1 ms, so it is read only when RSS is already over the limit:
USS can never exceed RSS. Elsewhere psutil answers both.
"""

from __future__ import annotations

import os

import psutil

_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


class MemoryProbe:
    """Memory of the calling process, in KiB."""

    def __init__(self) -> None:
        self._pid = 0
        self._statm: int | None = None

    def _fd(self) -> int | None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            try:
                self._statm = os.open("/proc/self/statm", os.O_RDONLY)
            except OSError:
                self._statm = None
        return self._statm

    def rss_kib(self) -> int:
        """Resident set size."""
        fd = self._fd()
        if fd is None:
            return psutil.Process().memory_info().rss // 1024
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_KIB

    def uss_kib(self) -> int:
        """Unique set size: memory this process alone holds."""
        try:
            with open("/proc/self/smaps_rollup", "rb") as fh:
                total = 0
                for line in fh:
                    if line.startswith((b"Private_Clean:", b"Private_Dirty:", b"Private_Hugetlb:")):
                        total += int(line.split()[1])
                return total
        except OSError:
            return psutil.Process().memory_full_info().uss // 1024

    def over(self, limit_kib: int) -> int | None:
        """The USS if it is above ``limit_kib``, else None (RSS checked first)."""
        if self.rss_kib() <= limit_kib:
            return None
        uss = self.uss_kib()
        return uss if uss > limit_kib else None
