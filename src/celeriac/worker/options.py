"""Worker options: the settings a worker node runs with, after CLI overrides."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celeriac.config import validate
from celeriac.errors import ConfigurationError
from celeriac.protocol.entities import Queue

if TYPE_CHECKING:
    from celeriac.app import Celeriac


def expand_nodename(name: str) -> str:
    """Celery's node name variables: ``%h`` host name, ``%n`` short name, ``%d`` domain, ``%i`` pid."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    return name.replace("%h", host).replace("%n", short).replace("%d", domain).replace("%i", str(os.getpid()))


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Everything the master and its children need to know about this node."""

    queues: tuple[Queue, ...]
    concurrency: int
    prefetch_multiplier: int | str
    max_tasks_per_child: int | None
    max_memory_per_child: int | None
    max_memory_per_child_hard: int | None
    memory_interval: float
    nodename: str
    proc_alive_timeout: float
    stats_interval: float
    lease_seconds: float

    @property
    def queue_names(self) -> list[str]:
        """Names of the consumed queues."""
        return [q.name for q in self.queues]

    @classmethod
    def from_app(
        cls,
        app: Celeriac,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        prefetch_multiplier: int | str | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        max_memory_per_child_hard: int | None = None,
        nodename: str | None = None,
    ) -> WorkerOptions:
        """Settings of ``app``, with the given overrides validated like settings.

        The overrides are checked by the settings table's validators but not written into
        ``app.conf``: they belong to this node, and changing the app's settings would also
        drop its cached broker, result backend and router.
        """
        conf = app.conf
        overrides: dict[str, Any] = {
            "worker_concurrency": concurrency,
            "worker_prefetch_multiplier": prefetch_multiplier,
            "worker_max_tasks_per_child": max_tasks_per_child,
            "worker_max_memory_per_child": max_memory_per_child,
            "worker_max_memory_per_child_hard": max_memory_per_child_hard,
        }
        values = {
            name: conf[name] if value is None else validate(name, value) for name, value in overrides.items()
        }
        soft, hard = values["worker_max_memory_per_child"], values["worker_max_memory_per_child_hard"]
        if soft is not None and hard is not None and hard <= soft:
            raise ConfigurationError(
                f"worker_max_memory_per_child_hard={hard} KiB must be above worker_max_memory_per_child="
                f"{soft} KiB: the hard ceiling kills a child mid-task, the other replaces it after its "
                "task; raise the hard one or unset it"
            )
        chosen = app.queues_for(list(queues) if queues else None)
        if not chosen:
            raise ConfigurationError("the worker has no queue to consume: pass -Q or set task_queues")
        return cls(
            queues=tuple(chosen),
            concurrency=values["worker_concurrency"] or os.cpu_count() or 1,
            prefetch_multiplier=values["worker_prefetch_multiplier"],
            max_tasks_per_child=values["worker_max_tasks_per_child"],
            max_memory_per_child=values["worker_max_memory_per_child"],
            max_memory_per_child_hard=values["worker_max_memory_per_child_hard"],
            memory_interval=conf.worker_memory_interval,
            nodename=expand_nodename(nodename or "celeriac@%h"),
            proc_alive_timeout=conf.worker_proc_alive_timeout,
            stats_interval=conf.worker_stats_interval,
            lease_seconds=conf.broker_lease_timeout,
        )
