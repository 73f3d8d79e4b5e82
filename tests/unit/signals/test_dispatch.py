"""Signal: Celery's connect / disconnect / send, senders, weak references, failing receivers."""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

import pytest

from celeriac import signals
from celeriac.signals import Signal, UnsentSignalWarning


class Calls:
    """A receiver that records each call's sender and keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        return "seen"


def test_send_calls_receivers_with_signal_sender_and_arguments_and_returns_their_responses():
    signal = Signal(name="tested", providing_args={"x"})
    receiver = Calls()
    signal.connect(receiver)
    responses = signal.send(sender="proj.add", x=1)
    assert responses == [(receiver, "seen")]
    assert receiver.calls == [{"signal": signal, "sender": "proj.add", "x": 1}]


def test_send_without_receivers_returns_an_empty_list():
    assert Signal(name="quiet").send(sender=None, x=1) == []


def test_connect_is_a_decorator_with_and_without_arguments():
    signal = Signal(name="tested")
    seen: list[str] = []

    @signal.connect
    def everyone(sender: Any, **kwargs: Any) -> None:
        seen.append(f"everyone:{sender}")

    @signal.connect(sender="proj.add")
    def only_add(sender: Any, **kwargs: Any) -> None:
        seen.append(f"add:{sender}")

    assert callable(everyone) and callable(only_add)  # the decorators return the function
    signal.send(sender="proj.add")
    signal.send(sender="proj.mul")
    assert seen == ["everyone:proj.add", "add:proj.add", "everyone:proj.mul"]


def test_a_task_object_sender_matches_by_identity_and_a_name_by_equality(app):
    @app.task
    def add(x, y):
        return x + y

    @app.task
    def mul(x, y):
        return x * y

    signal = Signal(name="tested")
    for_add, for_name = Calls(), Calls()
    signal.connect(for_add, sender=add)
    signal.connect(for_name, sender="".join(["proj.", "add"]))  # an equal string, not the same object
    signal.send(sender=add)
    signal.send(sender=mul)
    signal.send(sender="proj.add")
    assert [call["sender"] for call in for_add.calls] == [add]
    assert [call["sender"] for call in for_name.calls] == ["proj.add"]


def test_connecting_twice_connects_once_and_dispatch_uid_dedupes_other_objects():
    signal = Signal(name="tested")
    receiver = Calls()
    signal.connect(receiver)
    signal.connect(receiver)
    first, second = Calls(), Calls()
    signal.connect(first, dispatch_uid="metrics")
    signal.connect(second, dispatch_uid="metrics")  # e.g. the module imported a second time
    signal.send(sender=None)
    assert len(receiver.calls) == 1
    assert (len(first.calls), len(second.calls)) == (1, 0)


def test_disconnect_by_receiver_sender_or_dispatch_uid():
    signal = Signal(name="tested")
    plain, for_add, by_uid = Calls(), Calls(), Calls()
    signal.connect(plain)
    signal.connect(for_add, sender="proj.add")
    signal.connect(by_uid, dispatch_uid="uid")
    assert signal.disconnect(for_add) is False  # it is connected for proj.add only
    assert signal.disconnect(for_add, sender="proj.add") is True
    assert signal.disconnect(dispatch_uid="uid") is True
    assert signal.disconnect(plain) is True
    assert signal.disconnect(plain) is False
    assert signal.send(sender="proj.add") == []
    assert not signal.receivers


def test_disconnect_needs_a_receiver_or_a_dispatch_uid():
    with pytest.raises(TypeError, match="receiver or a dispatch_uid"):
        Signal(name="tested").disconnect()


def test_a_receiver_without_kwargs_is_refused_at_connect():
    def handler(sender):
        pass

    with pytest.raises(ValueError, match=r"must accept keyword arguments: add \*\*kwargs"):
        Signal(name="tested").connect(handler)


def test_weak_receivers_go_away_with_their_object_and_strong_ones_stay():
    signal = Signal(name="tested")
    seen: list[str] = []

    def make(label: str):
        def receiver(**kwargs: Any) -> None:
            seen.append(label)

        return receiver

    signal.connect(make("weak"))  # nothing else holds it
    signal.connect(make("strong"), weak=False)
    gc.collect()
    signal.send(sender=None)
    assert seen == ["strong"]
    assert len(signal.receivers) == 1  # the dead reference was pruned


def test_a_bound_method_is_held_weakly_while_its_object_lives():
    signal = Signal(name="tested")

    class Listener:
        def __init__(self) -> None:
            self.count = 0

        def on_signal(self, **kwargs: Any) -> None:
            self.count += 1

    listener = Listener()
    signal.connect(listener.on_signal)  # a new bound-method object, dropped at once
    signal.send(sender=None)
    assert listener.count == 1
    assert signal.disconnect(listener.on_signal) is True  # another bound-method object, same key
    signal.connect(listener.on_signal)
    del listener
    gc.collect()
    assert signal.send(sender=None) == []


def test_a_failing_receiver_is_logged_with_its_traceback_and_the_others_still_run(caplog):
    signal = Signal(name="tested")
    after = Calls()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signal.connect(broken)
    signal.connect(after)
    with caplog.at_level(logging.ERROR, logger="celeriac.signals"):
        responses = signal.send(sender=None)
    assert isinstance(responses[0][1], RuntimeError)
    assert responses[1] == (after, "seen")
    [record] = caplog.records
    assert "signal tested: receiver" in record.getMessage() and "receiver bug" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_retry_receivers_are_called_again_until_they_return(monkeypatch, caplog):
    from celeriac.signals import dispatch

    pauses: list[float] = []
    monkeypatch.setattr(dispatch.time, "sleep", pauses.append)
    signal = Signal(name="tested")
    attempts: list[int] = []

    def flaky(**kwargs: Any) -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError("not yet")
        return "done"

    signal.connect(flaky, retry=True)
    with caplog.at_level(logging.ERROR, logger="celeriac.signals"):
        [(_, response)] = signal.send(sender=None)
    assert response == "done"
    assert pauses == [2.0, 4.0, 6.0]
    assert len(caplog.records) == 3
    assert signal.disconnect(flaky) is True  # disconnected by the function it was given


def test_connect_from_many_threads_keeps_every_receiver():
    signal = Signal(name="tested")
    receivers = [Calls() for _ in range(200)]
    start = threading.Barrier(8)

    def connect_share(share: list[Calls]) -> None:
        start.wait()
        for receiver in share:
            signal.connect(receiver)
            signal.send(sender=None)  # sending while others connect

    threads = [threading.Thread(target=connect_share, args=(receivers[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(signal.receivers) == 200
    assert len(signal.send(sender=None)) == 200


def test_has_listeners_repr_and_providing_args():
    signal = Signal(providing_args=["a", "b"], name="tested")
    assert signal.has_listeners() is False
    receiver = Calls()
    signal.connect(receiver, sender="x")
    assert signal.has_listeners("x") and not signal.has_listeners("y")
    assert signal.providing_args == {"a", "b"}
    assert repr(signal).startswith("<Signal: tested providing_args=")
    assert signal.send_robust(sender="x") == [(receiver, "seen")]


def test_connecting_to_a_signal_celeriac_never_sends_warns_with_what_to_do():
    def on_beat(**kwargs: Any) -> None:
        pass

    with pytest.warns(UnsentSignalWarning, match="never sends the beat_init signal.*periodic tasks"):
        signals.beat_init.connect(on_beat)
    try:
        assert signals.beat_init.receivers  # still connected: a project may send it itself
    finally:
        signals.beat_init.disconnect(on_beat)
    with pytest.warns(UnsentSignalWarning, match="task_received.*use task_prerun") as warned:

        @signals.task_received.connect(sender="proj.add")
        def on_received(**kwargs: Any) -> None:
            pass

    assert len(warned) == 1 and warned[0].filename == __file__  # once, at the decorator's line
    assert signals.task_received.disconnect(on_received, sender="proj.add") is True


def test_every_celery_signal_name_is_importable():
    celery_names = {
        "before_task_publish", "after_task_publish", "task_internal_error", "task_prerun", "task_postrun",
        "task_success", "task_received", "task_rejected", "task_unknown", "task_retry", "task_failure",
        "task_revoked", "celeryd_init", "celeryd_after_setup", "worker_init", "worker_before_create_process",
        "worker_process_init", "worker_process_shutdown", "worker_ready", "worker_shutdown",
        "worker_shutting_down", "setup_logging", "after_setup_logger", "after_setup_task_logger",
        "beat_init", "beat_embedded_init", "heartbeat_sent", "eventlet_pool_started",
        "eventlet_pool_preshutdown", "eventlet_pool_postshutdown", "eventlet_pool_apply",
        "import_modules", "task_sent", "user_preload_options",
    }  # fmt: skip
    for name in celery_names:
        signal = getattr(signals, name)
        assert isinstance(signal, Signal) and signal.name == name
    assert celery_names <= set(signals.__all__)
