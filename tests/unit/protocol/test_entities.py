"""Queue and Exchange: kombu's constructor arguments, and what they mean for delivery."""

from __future__ import annotations

import pytest

from celeriac import Exchange, Queue
from celeriac.errors import ConfigurationError
from celeriac.protocol import PERSISTENT, TRANSIENT
from celeriac.protocol.entities import delivery_mode_of


def test_queue_with_kombu_arguments():
    queue = Queue("transient", Exchange("transient", delivery_mode=1), routing_key="transient", durable=False)
    assert queue.name == "transient"
    assert queue.exchange.name == "transient"
    assert queue.exchange.delivery_mode == TRANSIENT
    assert queue.routing_key == "transient"
    assert queue.durable is False
    assert queue.default_delivery_mode() == TRANSIENT


def test_queue_defaults_to_an_exchange_and_routing_key_of_its_own_name():
    queue = Queue("celery")
    assert queue.exchange.name == "celery"
    assert queue.routing_key == "celery"
    assert queue.durable is True
    assert queue.default_delivery_mode() == PERSISTENT


def test_non_durable_queue_defaults_to_transient_messages():
    assert Queue("fast", durable=False).default_delivery_mode() == TRANSIENT


def test_exchange_given_by_name():
    assert Queue("q", "tasks").exchange == Exchange("tasks")


@pytest.mark.parametrize(
    ("value", "mode"), [(1, TRANSIENT), ("transient", TRANSIENT), (2, PERSISTENT), ("persistent", PERSISTENT)]
)
def test_delivery_mode_accepts_numbers_and_names(value, mode):
    assert delivery_mode_of(value) == mode
    assert Exchange("x", delivery_mode=value).delivery_mode == mode


def test_bad_delivery_mode_names_the_choices():
    with pytest.raises(ConfigurationError, match="'persistent' \\(2\\) or 'transient' \\(1\\)"):
        Exchange("x", delivery_mode="sometimes")


def test_queue_needs_a_name():
    with pytest.raises(ConfigurationError, match="non-empty name"):
        Queue("")


def test_bad_exchange_type_lists_the_types():
    with pytest.raises(ConfigurationError, match="direct, topic, fanout, headers"):
        Exchange("x", type="broadcast")


def test_queues_are_frozen_values():
    assert Queue("a", routing_key="k") == Queue("a", routing_key="k")
    with pytest.raises(AttributeError):
        Queue("a").name = "b"  # type: ignore[misc]
