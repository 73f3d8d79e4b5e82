"""HookChain: before_* hooks in registration order, after_* in reverse; a failing hook is skipped."""

from __future__ import annotations

import logging

import pytest

from celeriac.brokers.base import Delivery
from celeriac.hooks import DeadLettered, HookChain, Hooks, LostTask, Outcome
from celeriac.protocol.message import TaskMessage, encode
from celeriac.protocol.validate import InvalidMessage
from celeriac.task import Request

REQUEST = Request(id="t1", task="proj.t")
DELIVERY = Delivery("celery", encode(TaskMessage(id="t1", task="proj.u")), "tag", 1)
OUTCOME = Outcome("SUCCESS", 1)

# hook name → arguments to call it with
CALLS = {
    "after_child_start": (0,),
    "before_task": (REQUEST,),
    "after_task": (REQUEST, OUTCOME),
    "before_settle": (),
    "after_dead_letter": (DeadLettered("bad", "t1", "proj.t", "celery"),),
    "after_invalid_message": (DELIVERY, InvalidMessage("unknown task 'proj.u'", "t1", "proj.u")),
    "after_internal_error": (REQUEST, RuntimeError("on_success broke")),
    "before_child_exit": (0,),
    "after_task_lost": (LostTask("t1", "proj.t", RuntimeError("gone"), "killed", False),),
}


class Recorder(Hooks):
    def __init__(self, label: str, log: list[tuple[str, str]]) -> None:
        self.label = label
        self.log = log

    def _record(self, hook: str) -> None:
        self.log.append((self.label, hook))

    def after_child_start(self, index: int) -> None:
        self._record("after_child_start")

    def before_task(self, request: Request) -> None:
        self._record("before_task")

    def after_task(self, request: Request, outcome: Outcome) -> None:
        self._record("after_task")

    def before_settle(self) -> None:
        self._record("before_settle")

    def after_dead_letter(self, dead: DeadLettered) -> None:
        self._record("after_dead_letter")

    def after_invalid_message(self, delivery: Delivery, invalid: InvalidMessage) -> None:
        self._record("after_invalid_message")

    def after_internal_error(self, request: Request, exc: Exception) -> None:
        self._record("after_internal_error")

    def before_child_exit(self, index: int) -> None:
        self._record("before_child_exit")

    def after_task_lost(self, lost: LostTask) -> None:
        self._record("after_task_lost")

    def on_heartbeat(self) -> None:
        self._record("on_heartbeat")


class Failing(Hooks):
    def before_task(self, request: Request) -> None:
        raise RuntimeError("broken extension")

    def after_task(self, request: Request, outcome: Outcome) -> None:
        raise RuntimeError("broken extension")


def chain_of(*labels: str) -> tuple[HookChain, list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    return HookChain([Recorder(label, log) for label in labels]), log


@pytest.mark.parametrize("hook", [name for name in CALLS if name.startswith("before_")])
def test_before_hooks_run_in_registration_order(hook):
    chain, log = chain_of("a", "b", "c")
    getattr(chain, hook)(*CALLS[hook])
    assert log == [("a", hook), ("b", hook), ("c", hook)]


@pytest.mark.parametrize("hook", [name for name in CALLS if name.startswith("after_")])
def test_after_hooks_run_in_reverse_order(hook):
    chain, log = chain_of("a", "b", "c")
    getattr(chain, hook)(*CALLS[hook])
    assert log == [("c", hook), ("b", hook), ("a", hook)]


def test_hooks_added_later_run_last_before_and_first_after():
    chain, log = chain_of("a")
    chain.add(Recorder("b", log))
    chain.before_task(REQUEST)
    chain.after_task(REQUEST, OUTCOME)
    assert log == [("a", "before_task"), ("b", "before_task"), ("b", "after_task"), ("a", "after_task")]
    assert len(chain) == 2


def test_heartbeat_reaches_every_hook():
    chain, log = chain_of("a", "b")
    chain.on_heartbeat()
    assert sorted(log) == [("a", "on_heartbeat"), ("b", "on_heartbeat")]


def test_failing_hook_is_logged_and_the_others_still_run(caplog):
    log: list[tuple[str, str]] = []
    chain = HookChain([Recorder("a", log), Failing(), Recorder("c", log)])
    with caplog.at_level(logging.ERROR, logger="celeriac.hooks"):
        chain.before_task(REQUEST)
        chain.after_task(REQUEST, OUTCOME)
    assert log == [("a", "before_task"), ("c", "before_task"), ("c", "after_task"), ("a", "after_task")]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "hook Failing.before_task failed; continuing",
        "hook Failing.after_task failed; continuing",
    ]
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in errors)


def test_base_hooks_are_no_ops():
    hooks = Hooks()
    for name, args in CALLS.items():
        assert getattr(hooks, name)(*args) is None
    assert hooks.on_heartbeat() is None


def test_empty_chain_does_nothing():
    chain = HookChain()
    assert len(chain) == 0
    for name, args in CALLS.items():
        getattr(chain, name)(*args)


def test_app_hook_chain_holds_signal_result_and_canvas_hooks_then_added_hooks(app):
    log: list[tuple[str, str]] = []
    app.add_hooks(Recorder("mine", log))
    chain = app.hooks
    assert len(chain) == 4  # signals, results (a backend is configured), canvas, then mine
    chain.before_task(Request(id="t", task="x"))
    assert log == [("mine", "before_task")]
