"""Which queues are watched, and the alert levels of each: shared by ``celeriac monitor``
and the Munin plugin (which loads this, not the monitor, to answer Munin quickly)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celeriac.app import Celeriac

#: queues of celeriac's own (delay, dead letters, registry), never watched
INTERNAL_PREFIX = "celeriac."


def watched_queues(app: Celeriac, extra: Iterable[str] = ()) -> list[str]:
    """The queues to watch, sorted: the broker's (without celeriac's internal ones),
    ``monitor_queues``, the default queue, ``task_queues`` and ``extra``."""
    conf = app.conf
    listed = [q for q in app.broker.queue_names() if not q.startswith(INTERNAL_PREFIX)]
    configured = [conf.task_default_queue, *(q.name for q in conf.task_queues or ())]
    return sorted({*listed, *conf.monitor_queues, *configured, *extra})


def queue_limits(app: Celeriac, queue: str) -> dict[str, tuple[float, float | None]]:
    """``monitor_thresholds`` for ``queue``: its own entry over ``"*"``, limit by limit."""
    thresholds = app.conf.monitor_thresholds
    return {**thresholds.get("*", {}), **thresholds.get(queue, {})}
