"""The child loop in this process (no fork): prefetch window, recycling, warm stop, settling order."""

from __future__ import annotations

import multiprocessing
import os
import signal

import orjson
import pytest

from celeriac.hooks import Hooks
from celeriac.states import SUCCESS
from celeriac.worker.child import Child
from celeriac.worker.options import WorkerOptions
from celeriac.worker.slots import SlotTable

# a broken loop would otherwise wait for messages until the suite-wide timeout
pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def event_pipe():
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


@pytest.fixture
def no_signal_handlers(monkeypatch):
    """Child.main installs signal handlers for a child process; keep this process's own."""
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)
    monkeypatch.setattr(signal, "set_wakeup_fd", lambda fd, **kw: -1)
    process = multiprocessing.current_process()
    monkeypatch.setattr(process, "name", process.name)


def events(read_fd: int) -> list[dict]:
    os.set_blocking(read_fd, False)
    raw = os.read(read_fd, 65536)
    return [orjson.loads(line) for line in raw.splitlines()]


def make_child(app, event_pipe, **overrides) -> Child:
    """Build the child first: WorkerOptions.from_app applies overrides to app.conf."""
    options = WorkerOptions.from_app(app, **overrides)
    return Child(app, options, 0, SlotTable(1)[0], event_pipe[1])


def test_child_recycles_after_max_tasks_and_hands_back_the_rest(make_app, event_pipe, no_signal_handlers):
    app = make_app()
    ran: list[int] = []

    @app.task
    def job(n):
        ran.append(n)
        return n

    child = make_child(app, event_pipe, prefetch_multiplier=4, max_tasks_per_child=3)
    results = [job.delay(n) for n in range(5)]
    assert child.main() == 0

    assert ran == [0, 1, 2]
    assert [r.state for r in results[:3]] == [SUCCESS] * 3
    length = app.broker.queue_length("celery")
    assert (length.ready, length.reserved, length.total) == (2, 0, 2)  # unstarted ones went back
    # handed back, not requeued: they never ran, so their next delivery is no redelivery
    assert [d.deliveries for d in app.broker.fetch(["celery"], 5, 0, "next")] == [1, 1]
    ready, exit_event = events(event_pipe[0])
    assert ready["event"] == "ready"
    assert exit_event["event"] == "exit"
    assert exit_event["reason"] == "max-tasks"
    assert "worker_max_tasks_per_child=3" in exit_event["detail"]


def test_child_never_holds_more_than_its_prefetch_window(
    make_app, event_pipe, no_signal_handlers, monkeypatch
):
    app = make_app()
    child = make_child(app, event_pipe, prefetch_multiplier=2, max_tasks_per_child=7)
    asked: list[int] = []
    fetch = app.broker.fetch

    def spy(queues, n, timeout, consumer, ack=()):
        asked.append(n)
        got = fetch(queues, n, timeout, consumer, ack=ack)
        assert len(got) <= n
        return got

    monkeypatch.setattr(app.broker, "fetch", spy)

    @app.task
    def job():
        held = app.broker.queue_length("celery")
        assert held.reserved + getattr(held, "running", 0) <= 2

    for _ in range(7):
        job.delay()
    child.main()
    assert asked and set(asked) == {2}
    assert app.broker.queue_length("celery").total == 0


def test_warm_stop_finishes_the_running_task_and_hands_back_prefetched_ones(
    make_app, event_pipe, no_signal_handlers
):
    app = make_app()
    child_box: list[Child] = []
    ran: list[int] = []

    @app.task
    def job(n):
        ran.append(n)
        if n == 1:
            child_box[0].on_sigterm(signal.SIGTERM, None)  # SIGTERM arrives while task 1 runs
        return n

    child = make_child(app, event_pipe, prefetch_multiplier=4)
    child_box.append(child)
    results = [job.delay(n) for n in range(4)]
    child.main()

    assert ran == [0, 1]
    assert results[1].get(timeout=1) == 1
    length = app.broker.queue_length("celery")
    assert (length.ready, length.total) == (2, 2)
    assert [d.deliveries for d in app.broker.fetch(["celery"], 5, 0, "next")] == [1, 1]
    assert events(event_pipe[0])[-1]["reason"] == "shutdown"


def test_results_are_stored_before_the_messages_are_acked(
    make_app, event_pipe, no_signal_handlers, monkeypatch
):
    app = make_app(task_acks_late=True)
    order: list[str] = []

    class Watch(Hooks):
        def before_settle(self):
            order.append("results")

    app.add_hooks(Watch())
    child = make_child(app, event_pipe, max_tasks_per_child=2)
    ack = app.broker.ack
    fetch = app.broker.fetch

    def ack_spy(batch):
        if batch:
            order.append("ack")
        ack(batch)

    def fetch_spy(queues, n, timeout, consumer, ack=()):
        if ack:
            order.append("ack")
        return fetch(queues, n, timeout, consumer, ack=ack)

    monkeypatch.setattr(app.broker, "ack", ack_spy)
    monkeypatch.setattr(app.broker, "fetch", fetch_spy)

    @app.task
    def job():
        return 1

    job.delay()
    job.delay()
    child.main()
    acks = [i for i, step in enumerate(order) if step == "ack"]
    assert acks, order
    assert all(i > 0 and order[i - 1] == "results" for i in acks), order
    assert app.broker.queue_length("celery").total == 0


def test_a_stop_signal_sent_before_the_child_installed_its_handlers_is_not_lost(make_app, event_pipe):
    """The master blocks signals across fork(); the child unblocks them once its handlers are in."""
    app = make_app()
    names = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)
    saved = {signum: signal.getsignal(signum) for signum in names}
    saved_wakeup = signal.set_wakeup_fd(-1)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives "between fork and setup": stays pending
        assert signal.SIGTERM in signal.sigpending()
        child = Child(
            app, WorkerOptions.from_app(app, concurrency=1), 0, SlotTable(1)[0], event_pipe[1], blocked
        )
        assert not child.stopping
        child._install_signals()
        assert child.stopping, "the pending SIGTERM reached the child's own handler"
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(saved_wakeup)


def test_acks_are_kept_when_the_broker_call_carrying_them_fails(make_app, event_pipe, no_signal_handlers):
    from celeriac.errors import BrokerError

    app = make_app(task_acks_late=True)

    @app.task(name="unit.noop")
    def noop():
        return None

    child = make_child(app, event_pipe, concurrency=1, prefetch_multiplier=2)
    noop.apply_many([(), ()])
    child._fetch()
    while child._held:
        child._run_one(child._held.popleft())
    real_fetch = app.broker.fetch

    def failing_fetch(*args, **kwargs):
        raise BrokerError("database is locked")

    app.broker.fetch = failing_fetch
    with pytest.raises(BrokerError):
        child._fetch()
    app.broker.fetch = real_fetch
    assert app.broker.queue_length("celery").reserved == 2, "the broker never received the acks"
    child._fetch()  # the retry carries them
    assert app.broker.queue_length("celery").total == 0


def test_early_ack_tasks_stay_in_the_ledger_until_their_results_are_written(
    make_app, event_pipe, no_signal_handlers
):
    app = make_app()

    @app.task(name="unit.job")
    def job():
        return 1

    @app.task(name="unit.quiet", ignore_result=True)
    def quiet():
        return 2

    @app.task(name="unit.late", acks_late=True)
    def late():
        return 3

    child = make_child(app, event_pipe, concurrency=1, prefetch_multiplier=3)
    first, _, _ = job.delay(), quiet.delay(), late.delay()
    child._fetch()
    while child._held:
        child._run_one(child._held.popleft())
    # quiet stores nothing; late's message is not settled, it would run again
    assert child.slot.unwritten() == [(first.id, "unit.job")]
    assert first.state == "PENDING"
    child._fetch()  # the results are written, the acks go with the fetch
    assert child.slot.unwritten() == []
    assert first.get(timeout=1) == 1


def test_a_full_ledger_writes_the_results_and_keeps_the_acks_for_later(
    make_app, event_pipe, no_signal_handlers, monkeypatch
):
    monkeypatch.setattr("celeriac.worker.slots.UNWRITTEN_MAX", 2)
    monkeypatch.setattr("celeriac.worker.child.SETTLE_AFTER_S", 60.0)
    monkeypatch.setattr("celeriac.worker.child.SLOW_TASK_S", 60.0)
    app = make_app()
    written: list[int] = []
    acked: list[int] = []

    class Watch(Hooks):
        def before_settle(self):
            written.append(len(child.slot.unwritten()))

    app.add_hooks(Watch())
    child = make_child(app, event_pipe, prefetch_multiplier=5, max_tasks_per_child=5)
    ack = app.broker.ack
    monkeypatch.setattr(app.broker, "ack", lambda batch: (acked.append(len(batch)), ack(batch)))

    @app.task
    def job(n):
        return n

    results = [job.delay(n) for n in range(5)]
    assert child.main() == 0
    assert [r.get(timeout=1) for r in results] == [0, 1, 2, 3, 4]
    assert written == [2, 2, 1]  # before the ledger overflowed, then at the end
    assert acked == [5]  # in one call, at the end
