"""The same tasks, by the same names, for a stock Celery app and a celeriac app.

Workers of both kinds load this module (``celery -A shared_tasks:celery_app``,
``celeriac worker -A shared_tasks:celeriac_app``); the tests build apps of their
own with :func:`make_celery` / :func:`make_celeriac` for the producer side.
Both apps read the environment:

* ``INTEROP_BROKER_URL``: the broker both sides share (a Redis, or a RabbitMQ vhost);
* ``INTEROP_KEYPREFIX``: on Redis, ``broker_transport_options={"global_keyprefix": ...}``,
  one per test, so tests never see each other's keys (on RabbitMQ each test has a
  vhost of its own instead, and the prefix is not used);
* ``INTEROP_RESULT_BACKEND``: optional result backend (a Redis; result keys are not
  prefixed, see :func:`make_celery`);
* ``INTEROP_RUNS``: the run log. Every task appends one JSON line (one
  ``O_APPEND`` write, atomic between processes): which kind of worker ran it,
  the label, args, kwargs, task id, retries and the time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import celery

from celeriac import Celeriac

RECORD = "interop.record"
FLAKY = "interop.flaky"
ADD = "interop.add"


def is_redis(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("redis", "rediss", "unix")


def transport_options(broker_url: str, keyprefix: str) -> dict[str, Any]:
    """The key prefix on Redis; nothing on RabbitMQ (celeriac refuses options it does not know)."""
    return {"global_keyprefix": keyprefix} if is_redis(broker_url) else {}


def write_run(side: str, request: Any, label: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    entry = {
        "side": side,
        "label": label,
        "args": list(args),
        "kwargs": dict(kwargs),
        "id": request.id,
        "retries": request.retries,
        "pid": os.getpid(),
        "at": time.time(),
    }
    fd = os.open(os.environ["INTEROP_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def register(app: Any, side: str) -> None:
    """Define the shared tasks on ``app`` (a ``celery.Celery`` or a ``celeriac.Celeriac``)."""
    # Celery's decorator would also add each task to every Celery app created later
    # (and warn about the duplicate names); keep the tasks to this app.
    only_here = {"shared": False} if isinstance(app, celery.Celery) else {}

    @app.task(name=RECORD, bind=True, **only_here)
    def record(self: Any, label: str, *args: Any, **kwargs: Any) -> str:
        write_run(side, self.request, label, args, kwargs)
        return label

    @app.task(name=FLAKY, bind=True, max_retries=3, **only_here)
    def flaky(self: Any, label: str) -> str:
        """Fails on its first delivery and asks to be retried at once."""
        write_run(side, self.request, label, (), {})
        if self.request.retries < 1:
            raise self.retry(countdown=0)
        return label

    @app.task(name=ADD, bind=True, **only_here)
    def add(self: Any, x: int, y: int) -> int:
        write_run(side, self.request, "add", (x, y), {})
        return x + y


def make_celery(
    broker_url: str, keyprefix: str, result_backend: str | None = None, set_as_current: bool = True
) -> celery.Celery:
    """A stock Celery 5 app on ``broker_url`` (on Redis, with every key under ``keyprefix``)."""
    app = celery.Celery(
        "shared_tasks", broker=broker_url, backend=result_backend, set_as_current=set_as_current
    )
    app.conf.update(
        broker_transport_options=transport_options(broker_url, keyprefix),
        # results stay unprefixed: celeriac's Redis result backend has no key prefix option
        # (task ids are unique, so tests still do not share result keys)
        broker_connection_retry_on_startup=True,
        task_default_queue="celery",
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
    )
    register(app, "celery")
    return app


def make_celeriac(
    broker_url: str, keyprefix: str, result_backend: str | None = None, set_as_current: bool = True
) -> Celeriac:
    """A celeriac app on ``broker_url`` (on Redis, with every key under ``keyprefix``)."""
    app = Celeriac(
        "shared_tasks",
        broker=broker_url,
        backend=result_backend,
        broker_transport_options=transport_options(broker_url, keyprefix),
        set_as_current=set_as_current,
    )
    register(app, "celeriac")
    return app


def __getattr__(name: str) -> Any:
    """``celery_app`` / ``celeriac_app``, configured from the environment, made on first use
    (the worker processes ask for one; the test process builds its own with the factories)."""
    factories = {"celery_app": make_celery, "celeriac_app": make_celeriac}
    if name not in factories:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    url = os.environ.get("INTEROP_BROKER_URL", "redis://127.0.0.1:6379/0")
    prefix = os.environ.get("INTEROP_KEYPREFIX", "interop:")
    app = factories[name](url, prefix, os.environ.get("INTEROP_RESULT_BACKEND") or None)
    globals()[name] = app
    return app
