"""Shared tasks and helpers of the canvas tests: a worker drained in this thread."""

from __future__ import annotations

import pytest

from celeriac.protocol import TaskMessage, decode
from celeriac.protocol.serializers import JSON


class Calls(list):
    """What the tasks were called with, in order."""


@pytest.fixture
def calls():
    return Calls()


@pytest.fixture
def tasks(app, calls):
    """add, mul, fail, an old-style errback (task_id) and a new-style one (request, exc, traceback)."""

    @app.task(name="t.add")
    def add(x, y):
        calls.append(("add", x, y))
        return x + y

    @app.task(name="t.mul")
    def mul(x, y):
        calls.append(("mul", x, y))
        return x * y

    @app.task(name="t.fail")
    def fail(*args):
        calls.append(("fail", *args))
        raise ValueError("boom")

    @app.task(name="t.old_errback")
    def old_errback(task_id):
        calls.append(("old_errback", task_id))

    @app.task(name="t.new_errback")
    def new_errback(request, exc, traceback, tag="x"):
        calls.append(("new_errback", request.id, repr(exc), "ValueError" in traceback, tag))

    @app.task(name="t.record")
    def record(*args):
        calls.append(("record", *args))
        return list(args)

    return {t.name.removeprefix("t."): t for t in (add, mul, fail, old_errback, new_errback, record)}


def peek(app, queue="celery"):
    """The messages waiting on ``queue`` (consumed: for tests that only inspect what was sent)."""
    out = []
    for delivery in app.broker.fetch([queue], 1000, 0, "inspector"):
        message = decode(delivery.envelope, frozenset({JSON}), None)
        assert isinstance(message, TaskMessage), message
        out.append(message)
    return out


def drain(worker, limit=100):
    """Run messages until none is ready; return how many ran."""
    ran = 0
    while ran < limit:
        got = worker.fetch(n=1)
        if not got:
            return ran
        worker.run(got[0])
        ran += 1
    raise AssertionError(f"still messages after {limit} runs")
