"""The default app, for Celery's ``shared_task``: one module, one getter, no proxies.

``shared_task`` defines a task that is not tied to an app at import time (for
reusable apps). Each shared task is registered with the default app, which is the
last app created with ``set_as_current=True`` (the default). When a new default
app is created later, the shared tasks defined so far move to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.task import Task

_default_app: Celeriac | None = None
_shared: list[Task] = []


def set_default_app(app: Celeriac) -> None:
    """Make ``app`` the default and register every shared task with it."""
    global _default_app
    _default_app = app
    for task in _shared:
        app.tasks[task.name] = task
        type(task).app = app


def get_default_app() -> Celeriac:
    """The default app, created from the environment if no app exists yet."""
    if _default_app is None:
        from celeriac.app import Celeriac

        Celeriac("default")
    assert _default_app is not None
    return _default_app


def shared_task(fun: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Like ``app.task``, for the default app (Celery's ``shared_task``)."""

    def decorate(function: Callable[..., Any]) -> Task:
        task = get_default_app().register(function, **options)
        _shared.append(task)
        return task

    return decorate(fun) if fun is not None else decorate
