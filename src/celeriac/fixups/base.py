"""The fix-up interface (see :mod:`celeriac.fixups`)."""

from __future__ import annotations

from celeriac.hooks import Hooks


class Fixup:
    """A framework integration; every method is a no-op here. Subclass and override."""

    #: the framework's name, for messages
    name = ""

    def setup(self) -> None:
        """Before the task modules are imported (worker start): make the framework ready."""

    def task_packages(self) -> list[str] | None:
        """The packages ``autodiscover_tasks()`` searches when it is given none (None: no opinion)."""
        return None

    def hooks(self) -> Hooks | None:
        """Hooks for the worker, or None."""
        return None
