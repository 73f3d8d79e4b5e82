"""The builtin ``celery.*`` tasks: registered in every app, so a worker runs them for
celeriac and Celery producers alike.

* ``celery.starmap`` runs one chunk of ``Task.chunks``: the inner task's function
  once per argument list, in one child; its result is the list of return values.
  The worker logs and counts it under the inner task's name, with " (chunks)".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas.chunks import STARMAP
from celeriac.task import Task

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.protocol.message import TaskMessage

#: Builtin task names: registered in every app, left out of the task lists users read.
BUILTIN_TASKS = frozenset({STARMAP})


def inner_task_name(task: Any) -> str:
    """The task name in a ``celery.starmap`` message's ``task`` argument (a signature or a name)."""
    if isinstance(task, str):
        return task
    if isinstance(task, Mapping) and isinstance(task.get("task"), str):
        return str(task["task"])
    raise TypeError(
        f"{STARMAP}: 'task' must be a task name or a signature dict with a 'task' name, got {task!r:.200}"
    )


class StarmapTask(Task):
    """``celery.starmap``: reported under the name of the task it maps."""

    def report_name(self, message: TaskMessage) -> str:
        try:
            return f"{inner_task_name(message.kwargs.get('task'))} (chunks)"
        except TypeError:
            return message.task


def register_builtins(app: Celeriac) -> None:
    """Register the builtin tasks with ``app`` (every app has them)."""

    def starmap(task: Any, it: Iterable[Sequence[Any]]) -> list[Any]:
        """Call the task named in ``task`` once per argument list in ``it``, here, in order."""
        inner = app.get_task(inner_task_name(task))
        return [inner(*args) for args in it]

    app.register(starmap, name=STARMAP, base=StarmapTask)
