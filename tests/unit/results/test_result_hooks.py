"""Results are written before the acks, and a backend out of reach keeps them, not drops them."""

from __future__ import annotations

import pytest

from celeriac.errors import BrokerConnectionError
from celeriac.hooks import Hooks
from celeriac.states import SUCCESS


def _flaky(backend, failures: int) -> list[int]:
    """Make ``backend.store_many`` fail ``failures`` times, as a Redis being restarted does."""
    calls: list[int] = []
    real = backend.store_many

    def store_many(items):
        calls.append(len(items))
        if len(calls) <= failures:
            raise BrokerConnectionError("cannot reach the result backend (restarting)")
        return real(items)

    backend.store_many = store_many
    return calls


def test_results_buffered_while_the_backend_is_down_are_written_once_it_is_back(app, inline_worker):
    @app.task
    def add(x, y):
        return x + y

    add.delay(1, 2)
    add.delay(3, 4)
    worker = inline_worker(app)
    calls = _flaky(app.backend, failures=1)
    first, second = worker.fetch()
    first_id, second_id = (d.envelope.headers["id"] for d in (first, second))
    worker.executor.execute(first)
    with pytest.raises(BrokerConnectionError):
        worker.hooks.before_settle()  # the child acks nothing and tries again
    assert app.AsyncResult(first_id).state == "PENDING"
    worker.executor.execute(second)
    worker.hooks.before_settle()
    assert calls == [1, 2]
    assert (app.AsyncResult(first_id).state, app.AsyncResult(first_id).result) == (SUCCESS, 3)
    assert app.AsyncResult(second_id).result == 7


def test_another_hook_failing_does_not_stop_the_results(app, inline_worker):
    class Broken(Hooks):
        def before_settle(self):
            raise RuntimeError("a user's hook with a bug")

    @app.task
    def one():
        return 1

    app.add_hooks(Broken())
    one.delay()
    worker = inline_worker(app)
    [delivery] = worker.fetch()
    worker.executor.execute(delivery)
    worker.hooks.before_settle()  # logged, not raised
    assert app.AsyncResult(delivery.envelope.headers["id"]).get(timeout=1) == 1
