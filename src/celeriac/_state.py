"""The default app, for Celery's ``shared_task``: one module, one getter, no proxies.

``shared_task`` defines a task that is not tied to an app at import time (for
reusable apps). Each shared task is registered with the default app, which is the
last app created with ``set_as_current=True`` (the default). When a new default
app is created later, the shared tasks defined so far move to it.

The reference itself is kept in :mod:`celeriac.context` (one variable, read with
``context.default_app()``), so that result handles, a layer below the app, can
reach the default app's result backend; this module decides what goes there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celeriac import context

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.task import Task

_shared: list[Task] = []


def set_default_app(app: Celeriac) -> None:
    """Make ``app`` the default and register every shared task with it."""
    context.set_default_app(app)
    for task in _shared:
        app.tasks[task.name] = task
        type(task).app = app


def get_default_app() -> Celeriac:
    """The default app, created from the environment if no app exists yet."""
    app = context.default_app()
    if app is None:
        from celeriac.app import Celeriac

        app = Celeriac("default")
    return app


def shared_task(fun: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Like ``app.task``, for the default app (Celery's ``shared_task``)."""

    def decorate(function: Callable[..., Any]) -> Task:
        task = get_default_app().register(function, **options)
        _shared.append(task)
        return task

    return decorate(fun) if fun is not None else decorate
