"""Fixtures for the unit tests: a fresh memory-broker app per test, no environment leaks.

Nothing here starts a process or opens a socket. Workers are simulated with
:class:`InlineWorker`, which feeds deliveries of the app's memory broker to
``celeriac.worker.execute.Executor`` and settles them the way the child loop does
(results written first, then acks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from celeriac import _state, context
from celeriac.app import Celeriac
from celeriac.brokers.base import Delivery
from celeriac.worker.execute import ACK, REQUEUE, Executor, Settlement

_ENV_ALIASES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
#: set, every app would install the Django fix-up (celeriac.fixups.django)
_ENV_FIXUPS = ("DJANGO_SETTINGS_MODULE",)


@pytest.fixture(autouse=True)
def _no_celeriac_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: a developer's CELERIAC_* must not change test outcomes."""
    for name in list(os.environ):
        if name.startswith("CELERIAC_") or name in _ENV_ALIASES or name in _ENV_FIXUPS:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _restore_default_app() -> Iterator[None]:
    """``Celeriac(...)`` becomes the default app (for ``shared_task``): each test starts with none
    (an app an earlier test module imported must not answer for it), and what was set is put back."""
    saved_app = context.default_app()
    saved_shared = list(_state._shared)
    context.set_default_app(None)
    yield
    context.set_default_app(saved_app)
    _state._shared[:] = saved_shared


@pytest.fixture
def make_app() -> Iterator[Callable[..., Celeriac]]:
    """Factory: ``make_app(**settings)`` builds an app on a fresh memory broker and memory backend."""
    apps: list[Celeriac] = []

    def build(main: str = "tests", **settings: Any) -> Celeriac:
        settings.setdefault("broker", "memory://")
        settings.setdefault("backend", "memory://")
        app = Celeriac(main, **settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., Celeriac]) -> Celeriac:
    """A fresh app: memory broker, memory result backend, default settings."""
    return make_app()


class InlineWorker:
    """Runs an app's queued messages through the Executor in this thread, as a child would."""

    consumer = "unit-test-consumer"

    def __init__(self, app: Celeriac, hostname: str = "unit@test") -> None:
        self.app = app
        self.broker = app.broker
        self.hooks = app.hooks
        self.executor = Executor(app, self.broker, self.hooks, hostname)

    def queue_names(self) -> list[str]:
        return [q.name for q in self.app.queues_for(None)]

    def fetch(self, queues: Sequence[str] | None = None, n: int = 100) -> list[Delivery]:
        return self.broker.fetch(list(queues or self.queue_names()), n, 0, self.consumer)

    def fetch_one(self, queues: Sequence[str] | None = None) -> Delivery:
        got = self.fetch(queues, 1)
        assert len(got) == 1, f"expected one ready message on {queues or self.queue_names()}"
        return got[0]

    def settle(self, delivery: Delivery, settlement: Settlement) -> None:
        self.hooks.before_settle()
        if settlement.action == ACK:
            self.broker.ack([delivery])
        elif settlement.action == REQUEUE:
            self.broker.reject([delivery], requeue=True)

    def run(self, delivery: Delivery) -> Settlement:
        settlement = self.executor.execute(delivery).settlement
        self.settle(delivery, settlement)
        return settlement

    def run_next(self, queues: Sequence[str] | None = None) -> Settlement:
        return self.run(self.fetch_one(queues))


@pytest.fixture
def inline_worker() -> Callable[..., InlineWorker]:
    """Factory: ``inline_worker(app)``; build it after the app's settings are final."""
    return InlineWorker
