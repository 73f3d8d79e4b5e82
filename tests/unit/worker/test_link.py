"""The master's broker link: backoff, one line per attempt, recovery, giving up."""

from __future__ import annotations

import logging

import pytest

from celeriac.errors import BrokerError
from celeriac.worker.link import LONGEST_PAUSE_S, BrokerLink


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_attempts_back_off_to_a_ceiling(clock):
    link = BrokerLink("redis://x", retry=True, max_retries=None, clock=clock)
    pauses = []
    for _ in range(8):
        link.failed("renewing leases", BrokerError("connection refused"))
        pauses.append(link.pause())
    assert pauses[:4] == [1.0, 2.0, 4.0, 8.0]
    assert pauses[-1] == LONGEST_PAUSE_S


def test_broker_work_waits_for_the_next_attempt(clock):
    link = BrokerLink("redis://x", retry=True, max_retries=None, clock=clock)
    assert link.due()
    link.failed("publishing the heartbeat", BrokerError("down"))
    assert not link.due()
    clock.now += 1.0
    assert link.due()


def test_each_attempt_is_logged_and_the_recovery_once(clock, caplog):
    link = BrokerLink("redis://x", retry=True, max_retries=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        link.failed("renewing leases", BrokerError("connection refused"))
        clock.now += 5
        link.failed("renewing leases", BrokerError("connection refused"))
        clock.now += 2
        link.ok()
        link.ok()
    messages = [r.getMessage() for r in caplog.records]
    assert "attempt 1 of 10" in messages[0] and "connection refused" in messages[0]
    assert "attempt 2 of 10, down for 5 s" in messages[1]
    assert messages[2] == "broker at redis://x is back after 7.0 s (2 failed attempts)"
    assert len(messages) == 3
    assert not link.down and link.attempts == 0


def test_gives_up_after_max_retries(clock):
    link = BrokerLink("redis://x", retry=True, max_retries=2, clock=clock)
    for _ in range(2):
        link.failed("starting", BrokerError("down"))
        assert link.give_up_reason() is None
    link.failed("starting", BrokerError("down"))
    reason = link.give_up_reason()
    assert reason is not None and "broker_connection_max_retries=2" in reason


def test_without_retry_the_first_loss_is_final(clock):
    link = BrokerLink("redis://x", retry=False, max_retries=100, clock=clock)
    assert link.give_up_reason() is None
    link.failed("renewing leases", BrokerError("down"))
    assert "broker_connection_retry is False" in (link.give_up_reason() or "")
