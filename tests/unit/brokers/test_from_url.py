"""from_url: the broker for a URL, imported lazily; clear errors for everything else."""

from __future__ import annotations

import pytest

from celeriac.brokers import BrokerOptions, from_url
from celeriac.brokers.memory import MemoryBroker
from celeriac.brokers.sqlite.broker import SQLiteBroker
from celeriac.errors import ConfigurationError


def test_memory_url_gives_a_memory_broker_with_the_options():
    options = BrokerOptions(lease_seconds=5, delivery_limit=2)
    broker = from_url("memory://", options)
    assert isinstance(broker, MemoryBroker)
    assert broker.options is options


def test_each_memory_broker_is_its_own_store():
    assert from_url("memory://") is not from_url("memory://")


def test_sqlite_url_gives_a_sqlite_broker(tmp_path):
    broker = from_url(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        assert isinstance(broker, SQLiteBroker)
    finally:
        broker.close()


@pytest.mark.parametrize("url", ["amqp://guest:secret@localhost//", "amqps://h/v", "pyamqp://guest@h:5673/"])
def test_amqp_urls_make_a_rabbitmq_broker_without_connecting(url):
    from celeriac.brokers.amqp.broker import AMQPBroker

    broker = from_url(url)
    assert isinstance(broker, AMQPBroker)
    assert "secret" not in broker.location


@pytest.mark.parametrize(
    ("url", "host", "port", "vhost", "tls"),
    [
        ("amqp://guest:guest@localhost:5672//", "localhost", 5672, "/", False),
        ("amqp://u:p@rabbit/", "rabbit", 5672, "/", False),
        ("amqp://u:p@rabbit/prod", "rabbit", 5672, "prod", False),
        ("amqp://u:p@rabbit/my%2Fvhost", "rabbit", 5672, "my/vhost", False),
        ("amqps://u:p@rabbit/prod", "rabbit", 5671, "prod", True),
    ],
)
def test_amqp_urls_read_as_celery_reads_them(url, host, port, vhost, tls):
    from celeriac.brokers.amqp.connection import parse_url

    params = parse_url(url)
    assert (params.host, params.port, params.virtual_host, bool(params.ssl)) == (host, port, vhost, tls)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://localhost:port/0", "port is not a number"),
        ("redis://localhost:6379/zero", "database after the host must be a number"),
        ("unix://", "needs a socket path"),
        ("redis://:pw@localhost:port/0", "port is not a number"),
        (
            "redis://:pw@a:6379/0;redis://:pw@b:6379/0",
            "list of Redis URLs .* use Redis Sentinel: sentinel://",
        ),
    ],
)
def test_bad_redis_urls_say_what_is_wrong(url, problem):
    with pytest.raises(ConfigurationError, match=problem) as info:
        from_url(url)
    assert "broker_url=" in str(info.value)
    assert "pw" not in str(info.value)  # the password is masked


def test_redis_url_makes_a_redis_broker_without_connecting():
    from celeriac.brokers.redis.broker import RedisBroker

    broker = from_url("redis://:secret@localhost:1/0")
    assert isinstance(broker, RedisBroker)
    assert "secret" not in broker.location


def test_unknown_scheme_lists_the_supported_ones():
    with pytest.raises(ConfigurationError) as info:
        from_url("carrier-pigeon://coop")
    assert "unknown broker scheme 'carrier-pigeon'" in str(info.value)
    assert "not available" not in str(info.value)


@pytest.mark.parametrize("url", ["celeriac.db", "", None])
def test_value_that_is_not_a_url_is_refused(url):
    with pytest.raises(ConfigurationError, match="is not a URL"):
        from_url(url)  # type: ignore[arg-type]


def test_sqlite_url_with_a_host_is_refused_with_the_right_spelling():
    with pytest.raises(ConfigurationError, match="sqlite:///relative/path.db"):
        from_url("sqlite://host/celeriac.db")


def test_a_refused_url_keeps_its_password_out_of_the_error():
    from celeriac.results import backend_from_url

    with pytest.raises(ConfigurationError) as broker_error:
        from_url("kafka://user:hunter2@host:9092/0")
    with pytest.raises(ConfigurationError) as backend_error:
        backend_from_url("mongodb://user:hunter2@host/results", "json", ["json"], None)
    for error in (broker_error, backend_error):
        assert "hunter2" not in str(error.value)
        assert "user:***@host" in str(error.value)


def test_kombu_transport_options_rabbitmq_does_not_use_are_named_in_a_warning(caplog):
    """A Celery config's kombu options load, and each one that does nothing says so."""
    options = BrokerOptions(transport_options={"confirm_publish": True, "max_retries": 3, "heartbeat": 10})
    with caplog.at_level("WARNING", logger="celeriac.rabbitmq"):
        from_url("amqp://guest@localhost//", options)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert warned[0].startswith("broker_transport_options confirm_publish=True has no effect")
    assert "every publish is confirmed" in warned[0]
    assert warned[1].startswith("broker_transport_options max_retries=3 has no effect")
    assert "broker_connection_max_retries" in warned[1]


def test_an_unknown_rabbitmq_transport_option_is_refused_with_the_names_it_takes():
    with pytest.raises(
        ConfigurationError, match="'confirm_publsh' not known to the RabbitMQ broker; it takes"
    ):
        from_url("amqp://guest@localhost//", BrokerOptions(transport_options={"confirm_publsh": True}))
