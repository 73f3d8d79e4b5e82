"""Signal handlers only record what the master must do; tests call them directly."""

from __future__ import annotations

import os
import signal

import pytest

from celeriac.worker.control import Action, Control


@pytest.fixture
def control():
    control = Control()
    yield control
    control.close()


def test_sigterm_asks_for_a_warm_stop(control):
    control.handle_signal(signal.SIGTERM)
    assert control.take() == [Action.WARM_STOP]


def test_second_sigterm_turns_it_into_a_cold_stop(control):
    control.handle_signal(signal.SIGTERM)
    control.handle_signal(signal.SIGTERM)
    assert control.take() == [Action.WARM_STOP, Action.COLD_STOP]


def test_second_sigterm_after_the_first_was_taken_is_still_cold(control):
    control.handle_signal(signal.SIGTERM)
    assert control.take() == [Action.WARM_STOP]
    control.handle_signal(signal.SIGTERM)
    assert control.take() == [Action.COLD_STOP]


def test_sigint_behaves_like_sigterm(control):
    control.handle_signal(signal.SIGINT)
    control.handle_signal(signal.SIGINT)
    assert control.take() == [Action.WARM_STOP, Action.COLD_STOP]


def test_sigquit_asks_for_a_cold_stop_at_once(control):
    control.handle_signal(signal.SIGQUIT)
    assert control.take() == [Action.COLD_STOP]


def test_sigterm_after_sigquit_stays_cold(control):
    control.handle_signal(signal.SIGQUIT)
    control.handle_signal(signal.SIGTERM)
    assert control.take() == [Action.COLD_STOP, Action.COLD_STOP]


def test_sigchld_asks_to_reap(control):
    control.handle_signal(signal.SIGCHLD)
    control.handle_signal(signal.SIGCHLD)
    assert control.take() == [Action.REAP, Action.REAP]
    assert control.stop_requests == 0


def test_other_signals_are_ignored(control):
    control.handle_signal(signal.SIGUSR2)
    control.handle_signal(signal.SIGHUP)
    assert control.take() == []


def test_take_returns_actions_oldest_first_and_empties_the_queue(control):
    control.handle_signal(signal.SIGCHLD)
    control.handle_signal(signal.SIGTERM)
    assert control.take() == [Action.REAP, Action.WARM_STOP]
    assert control.take() == []


def test_handler_accepts_the_frame_argument_of_signal_handlers(control):
    control.handle_signal(signal.SIGTERM, None)
    assert control.take() == [Action.WARM_STOP]


def test_drain_wakeups_empties_the_pipe_without_blocking(control):
    os.write(control.wake_w, b"\x0f" * 10)
    control.drain_wakeups()
    with pytest.raises(BlockingIOError):
        os.read(control.wake_r, 1)
    control.drain_wakeups()  # empty pipe: returns at once


def test_close_releases_the_pipe():
    control = Control()
    fds = (control.wake_r, control.wake_w)
    control.close()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    control.close()  # twice is harmless
