"""Driver exceptions become celeriac errors at the broker boundary (STYLE C2 rule 4).

No server: the drivers' exceptions are raised by hand, the way redis-py and py-amqp
raise them, and what comes out of the boundary is checked by type.
"""

from __future__ import annotations

import amqp.exceptions
import pytest
import redis.exceptions

from celeriac.brokers.amqp.connection import call, explain
from celeriac.brokers.base import BrokerOptions, publish_with_retry
from celeriac.brokers.redis.connection import RedisConnector
from celeriac.errors import (
    BrokerConnectionError,
    BrokerError,
    QueueMismatchError,
    QueueNotAllowedError,
    QueueNotFoundError,
)

WHERE = "amqp://guest:***@localhost:5672//"


def _raise(exc: BaseException):
    def fn(*_args):
        raise exc

    return fn


# -- Redis ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "driver_error",
    [
        redis.exceptions.ConnectionError("Connection closed by server."),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.AuthenticationError("invalid password"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_redis_connection_loss_and_timeouts_are_broker_connection_errors(driver_error):
    connector = RedisConnector("redis://127.0.0.1:6379/0")
    with pytest.raises(BrokerConnectionError) as caught:
        connector.call("pinging", _raise(driver_error))
    assert caught.value.__cause__ is driver_error
    assert "pinging" in str(caught.value)


@pytest.mark.parametrize(
    "driver_error",
    [redis.exceptions.ResponseError("WRONGTYPE"), redis.exceptions.DataError("bad value")],
    ids=lambda error: type(error).__name__,
)
def test_other_redis_errors_are_broker_errors_not_connection_errors(driver_error):
    connector = RedisConnector("redis://127.0.0.1:6379/0")
    with pytest.raises(BrokerError) as caught:
        connector.call("storing", _raise(driver_error))
    assert not isinstance(caught.value, BrokerConnectionError)
    assert caught.value.__cause__ is driver_error


# -- RabbitMQ -------------------------------------------------------------------------------------


def test_amqp_not_found_is_queue_not_found():
    error = explain(amqp.exceptions.NotFound("NOT_FOUND - no queue 'q' in vhost '/'"), "reading", WHERE)
    assert type(error) is QueueNotFoundError
    assert "no queue 'q'" in str(error)


def test_amqp_precondition_failed_on_a_queue_is_a_mismatch_with_both_values():
    text = (
        "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': "
        "received '9' but current is '5'"
    )
    error = explain(amqp.exceptions.PreconditionFailed(text), "declaring queue 'q'", WHERE)
    assert type(error) is QueueMismatchError
    found = (error.kind, error.argument, error.declared, error.existing)
    assert found == ("queue", "x-max-priority", "9", "5")
    assert error.detail == text


def test_amqp_precondition_failed_on_an_exchange_is_an_exchange_mismatch():
    text = (
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': "
        "received 'direct' but current is 'fanout'"
    )
    error = explain(amqp.exceptions.PreconditionFailed(text), "declaring queue 'q'", WHERE)
    assert type(error) is QueueMismatchError
    assert (error.kind, error.argument) == ("exchange", None)


def test_a_denied_transient_queue_is_queue_not_allowed():
    driver_error = amqp.exceptions.InternalError(
        "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated. Its use is not "
        "permitted per the configuration"
    )
    assert type(explain(driver_error, "declaring queue 'q'", WHERE)) is QueueNotAllowedError


@pytest.mark.parametrize(
    "driver_error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        amqp.exceptions.ConnectionForced("CONNECTION_FORCED - broker forced connection closure"),
        amqp.exceptions.RecoverableConnectionError("connection already closed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_amqp_connection_loss_is_a_broker_connection_error(driver_error):
    with pytest.raises(BrokerConnectionError) as caught:
        call("publishing", WHERE, _raise(driver_error))
    assert caught.value.__cause__ is driver_error


def test_amqp_access_refused_is_a_broker_error_not_a_connection_error():
    error = explain(amqp.exceptions.AccessRefused("ACCESS_REFUSED"), "connecting", WHERE)
    assert type(error) is BrokerError


# -- what the brokers do with them ----------------------------------------------------------------


def test_publish_retries_a_lost_connection_only():
    options = BrokerOptions(
        publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0, "interval_max": 0}
    )
    attempts: list[int] = []

    def lost_twice() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise BrokerConnectionError("lost")
        return "sent"

    assert publish_with_retry(options, "publishing", lost_twice) == "sent"
    assert len(attempts) == 3

    refused: list[int] = []

    def refused_once() -> None:
        refused.append(1)
        raise QueueNotFoundError("no queue")

    with pytest.raises(QueueNotFoundError):
        publish_with_retry(options, "publishing", refused_once)
    assert len(refused) == 1
