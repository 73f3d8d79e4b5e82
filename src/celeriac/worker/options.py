"""Worker options: the settings a worker node runs with, after CLI overrides.

Node names follow Celery: ``name@host``, where a name without ``@`` is the host part
(``-n worker1`` is ``celeriac@worker1``, as Celery makes it ``celery@worker1``), and
``%`` variables are expanded (:func:`expand_nodename`). File names given per node
(``--pidfile``, ``--logfile``) take the node's parts (:func:`node_format`), so
Celery's ``--pidfile=/run/celery/%n.pid`` names one file per node.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celeriac.config import validate
from celeriac.errors import ConfigurationError
from celeriac.protocol.entities import Queue

if TYPE_CHECKING:
    from celeriac.app import Celeriac

#: The node name's part before ``@`` when none is given (Celery's is ``celery``).
DEFAULT_NODE_NAME = "celeriac"
#: How a worker pool runs tasks: ``prefork`` children, or ``solo``, in the node's one process.
POOLS = ("prefork", "solo")
#: Settings about child processes, which a ``solo`` node (no children) does not use.
SOLO_UNUSED = (
    "worker_concurrency",
    "worker_max_tasks_per_child",
    "worker_max_memory_per_child",
    "worker_max_memory_per_child_hard",
)
_VARIABLE = re.compile(r"%(.)")


def _expand(text: str, values: Mapping[str, str], what: str) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            known = ", ".join(f"%{k}" for k in values)
            raise ConfigurationError(f"{what} {text!r}: unknown variable %{key} (known: {known})")
        return values[key]

    return _VARIABLE.sub(one, text)


def expand_nodename(name: str) -> str:
    """Celery's node name: ``name@host`` (a bare name is the host: ``w1`` is ``celeriac@w1``),
    with ``%h`` host name, ``%n`` short host name, ``%d`` domain, ``%i`` pid, ``%%`` a ``%``."""
    if "@" not in name:
        name = f"{DEFAULT_NODE_NAME}@{name}"
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    values = {"h": host, "n": short, "d": domain, "i": str(os.getpid()), "%": "%"}
    return _expand(name, values, "node name (-n/--hostname)")


def node_format(text: str, nodename: str, what: str) -> str:
    """A per-node file name, as Celery's ``--pidfile``/``--logfile`` take it: ``%n`` the node
    name's part before ``@``, ``%h`` the part after it, ``%d`` that host's domain, ``%p`` the
    whole node name, ``%i`` ``0`` and ``%I`` nothing (the master's process index: children
    log to the master's file), ``%%`` a ``%``."""
    name, _, host = nodename.partition("@")
    values = {
        "n": name,
        "h": host,
        "d": host.partition(".")[2],
        "p": nodename,
        "i": "0",
        "I": "",
        "%": "%",
    }
    return _expand(text, values, what)


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
    #: ``prefork`` (children) or ``solo`` (tasks run in the node's one process)
    pool: str = "prefork"

    @property
    def queue_names(self) -> list[str]:
        """Names of the consumed queues."""
        return [q.name for q in self.queues]

    @classmethod
    def from_app(
        cls,
        app: Celeriac,
        queues: Sequence[str] | None = None,
        exclude_queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        prefetch_multiplier: int | str | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        max_memory_per_child_hard: int | None = None,
        nodename: str | None = None,
        pool: str = "prefork",
    ) -> WorkerOptions:
        """Settings of ``app``, with the given overrides validated like settings.

        The overrides are checked by the settings table's validators but not written into
        ``app.conf``: they belong to this node, and changing the app's settings would also
        drop its cached broker, result backend and router. A ``solo`` pool runs one task at a
        time in the node's own process: it has no children to count or recycle
        (:data:`SOLO_UNUSED`).
        """
        if pool not in POOLS:
            raise ConfigurationError(f"worker pool {pool!r}: use one of {', '.join(POOLS)}")
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
        if pool == "solo":
            values.update(dict.fromkeys(SOLO_UNUSED), worker_concurrency=1)
        chosen = _without(app.queues_for(list(queues) if queues else None), exclude_queues or ())
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
            pool=pool,
        )


def _without(queues: list[Queue], excluded: Sequence[str]) -> list[Queue]:
    """``queues`` less the ``-X/--exclude-queues`` names, each of which must be one of them."""
    names = [q.name for q in queues]
    unknown = [name for name in excluded if name not in names]
    if unknown:
        raise ConfigurationError(
            f"-X/--exclude-queues {','.join(unknown)}: not among the queues this worker would consume "
            f"({', '.join(names)}); check the spelling, or drop it from -X"
        )
    return [q for q in queues if q.name not in excluded]
