"""``sentinel://`` URLs read as kombu and Celery read them, checked, masked; no server is reached."""

from __future__ import annotations

import pytest

from celeriac.app import Celeriac
from celeriac.brokers import BrokerOptions, from_url
from celeriac.brokers.base import mask_password
from celeriac.brokers.redis.broker import RedisBroker
from celeriac.brokers.redis.connection import RedisConnector, _pool_class
from celeriac.brokers.redis.sentinel import SentinelURL, parse_url, read_options
from celeriac.errors import ConfigurationError
from celeriac.results import backend_from_url
from celeriac.store import store_from_url

CELERY_EXAMPLE = "sentinel://:s3cret@10.0.0.1:26379/0;sentinel://10.0.0.2:26379/0;sentinel://10.0.0.3:26379/0"
MASTER = {"master_name": "mymaster"}


def test_the_celery_example_names_three_sentinels_and_the_masters_password_and_db():
    assert parse_url(CELERY_EXAMPLE) == SentinelURL(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)),
        db=0,
        username=None,
        password="s3cret",
    )


def test_user_password_and_db_come_from_the_first_part_decoded():
    url = "sentinel://app:p%40ss%3Bw@h1:26379/3;sentinel://h2:26380;sentinel://h3:26381/3;"
    parsed = parse_url(url)
    assert parsed.sentinels == (("h1", 26379), ("h2", 26380), ("h3", 26381))
    assert (parsed.db, parsed.username, parsed.password) == (3, "app", "p@ss;w")


def test_one_sentinel_and_no_db_is_db_0():
    assert parse_url(" sentinel://h:26379 ") == SentinelURL((("h", 26379),), 0, None, None)


def test_every_bad_part_is_named_with_what_is_wrong_and_a_valid_example():
    url = "sentinel://:s3cret@a:26379/0;redis://b:6379/0;sentinel://c/0;sentinel://d:x;sentinel://e:1/q"
    with pytest.raises(ConfigurationError) as info:
        parse_url(url)
    message = str(info.value)
    assert "'redis://b:6379/0': not sentinel://host:port" in message
    assert "'sentinel://c/0': no port (sentinels usually listen on 26379)" in message
    assert "'sentinel://d:x': the port is not a number" in message
    assert "'sentinel://e:1/q': the db after the address must be a number" in message
    assert "'sentinel://:***@a:26379/0':" not in message, "the good part is not named as bad"
    assert "e.g. sentinel://:password@10.0.0.1:26379/0;" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sentinel://:26379/0", "no host"),
        ("sentinel://h:26379/0?socket_timeout=1", "options go in the transport options"),
        ("sentinel://[::1:26379/0", "not a URL"),
        (";", "no sentinel is named"),
    ],
)
def test_malformed_parts_are_refused(url, problem):
    with pytest.raises(ConfigurationError, match=problem):
        parse_url(url, "result_backend")


def test_parts_that_disagree_on_the_db_are_refused():
    with pytest.raises(ConfigurationError, match=r"different dbs \(1 and 2\)"):
        parse_url("sentinel://a:26379/1;sentinel://b:26379/2")


def test_a_password_on_a_later_part_must_repeat_the_first_ones():
    assert parse_url("sentinel://:pw@a:26379;sentinel://:pw@b:26379").password == "pw"
    with pytest.raises(ConfigurationError, match="only the first part's password is used") as info:
        parse_url("sentinel://a:26379;sentinel://:hunter2@b:26379")
    assert "broker_transport_options={'sentinel_kwargs': {'password': ...}}" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda url: from_url(url, BrokerOptions(transport_options=MASTER)),
        lambda url: backend_from_url(url, "json", ["json"], None, MASTER),
        lambda url: store_from_url(url, "result_backend", MASTER),
    ],
    ids=["broker", "result backend", "store"],
)
def test_tls_sentinel_is_refused_everywhere_with_what_to_use(make):
    with pytest.raises(ConfigurationError, match="TLS to Redis Sentinel is not supported") as info:
        make("sentinels://:s3cret@a:26379/0;sentinels://b:26379/0")
    assert "use sentinel:// on a network you trust, or rediss://" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_mask_password_masks_every_part_of_a_list():
    assert mask_password("sentinel://:a@h1:1/0;sentinel://u:b@h2:2/0;sentinel://h3:3/0") == (
        "sentinel://:***@h1:1/0;sentinel://u:***@h2:2/0;sentinel://h3:3/0"
    )
    assert mask_password("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert mask_password("redis://host:6379/0") == "redis://host:6379/0"


def test_mask_password_masks_a_url_that_does_not_parse():
    assert mask_password("sentinel://u:pw@[::1:26379/0") == "sentinel://u:***@[::1:26379/0"


@pytest.mark.parametrize(
    ("setting", "where"),
    [("broker_url", "broker_transport_options"), ("result_backend", "result_backend_transport_options")],
)
def test_a_missing_master_name_names_the_setting_that_takes_it(setting, where):
    with pytest.raises(ConfigurationError) as info:
        read_options({"sentinel_kwargs": {}}, setting)
    assert f"{where}={{'master_name': 'mymaster'}}" in str(info.value)
    assert "sentinel monitor <name>" in str(info.value)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"master_name": 7}, "master_name=7: expected the master's name"),
        ({"master_name": "m", "sentinel_kwargs": "pw"}, "sentinel_kwargs='pw': expected a dict"),
        ({"master_name": "m", "min_other_sentinels": -1}, "min_other_sentinels=-1: expected an integer"),
    ],
)
def test_sentinel_options_of_the_wrong_type_are_refused(options, problem):
    with pytest.raises(ConfigurationError, match=problem):
        read_options(options)


def test_the_broker_refuses_a_sentinel_url_without_a_master_name_before_connecting():
    with pytest.raises(ConfigurationError, match=r"broker_transport_options=\{'master_name'"):
        from_url(CELERY_EXAMPLE)


def test_the_broker_takes_the_sentinel_options_and_logs_no_password():
    options = {**MASTER, "sentinel_kwargs": {"password": "sentinel-pw"}, "min_other_sentinels": 1}
    broker = from_url(CELERY_EXAMPLE, BrokerOptions(transport_options=options))
    assert isinstance(broker, RedisBroker)
    assert broker.location == CELERY_EXAMPLE.replace("s3cret", "***")


def test_master_and_sentinels_get_their_own_credentials_and_the_socket_options():
    connector = RedisConnector(
        CELERY_EXAMPLE,
        options={"socket_connect_timeout": 2.5, "socket_keepalive": True},
        sentinel={**MASTER, "sentinel_kwargs": {"password": "sentinel-pw"}, "global_keyprefix": "x"},
    )
    client = connector.client  # made without connecting
    master = client.connection_pool.connection_kwargs
    assert (master["password"], master["db"], master["socket_connect_timeout"]) == ("s3cret", 0, 2.5)
    assert client.connection_pool.service_name == "mymaster"
    asked = [s.connection_pool.connection_kwargs for s in connector._manager.sentinels]
    assert [(a["host"], a["port"]) for a in asked] == [(f"10.0.0.{i}", 26379) for i in (1, 2, 3)]
    assert {a["password"] for a in asked} == {"sentinel-pw"}
    assert {a["socket_connect_timeout"] for a in asked} == {2.5}, "a dead sentinel must not hang a call"
    connector.close()


def test_a_sentinel_option_redis_does_not_know_is_a_configuration_error():
    connector = RedisConnector(CELERY_EXAMPLE, sentinel={**MASTER, "sentinel_kwargs": {"pasword": "x"}})
    with pytest.raises(ConfigurationError, match="broker_transport_options sentinel_kwargs"):
        connector.call("ping", lambda c: c.ping())


def test_the_result_backend_reads_result_backend_transport_options():
    with pytest.raises(ConfigurationError, match=r"result_backend_transport_options=\{'master_name'"):
        backend_from_url(CELERY_EXAMPLE, "json", ["json"], None)
    with pytest.raises(ConfigurationError, match="'global_keyprefix' not known to the Redis result backend"):
        backend_from_url(CELERY_EXAMPLE, "json", ["json"], None, {**MASTER, "global_keyprefix": "p:"})
    backend = backend_from_url(CELERY_EXAMPLE, "json", ["json"], None, MASTER)
    assert backend.conn.sentinel is not None
    assert backend.conn.sentinel[1].master_name == "mymaster"


def test_an_app_passes_each_urls_own_transport_options():
    app = Celeriac(
        "sentinel-app",
        broker=CELERY_EXAMPLE,
        backend="sentinel://r1:26379/1;sentinel://r2:26379/1",
        broker_transport_options={"master_name": "queues"},
        result_backend_transport_options={"master_name": "results"},
        set_as_current=False,
    )
    assert app.broker.conn.sentinel[1].master_name == "queues"
    assert app.backend.conn.sentinel[1].master_name == "results"
    assert app.store.conn.sentinel[1].master_name == "results"
    app.conf.result_backend = None
    assert app.store.conn.sentinel[1].master_name == "queues", "the store follows the broker's URL"
    app.conf.result_backend_transport_options = {}
    app.conf.result_backend = "sentinel://r1:26379/1"
    with pytest.raises(ConfigurationError, match="result_backend_transport_options"):
        _ = app.backend


class _Manager:
    """Stands in for redis-py's Sentinel: the master is where ``address`` says."""

    def __init__(self) -> None:
        self.address = ("10.0.0.1", 6379)

    def discover_master(self, service_name: str) -> tuple[str, int]:
        return self.address


def test_a_connection_to_a_demoted_master_leaves_the_measured_pool():
    from redis.sentinel import SentinelManagedConnection

    class Unconnected(SentinelManagedConnection):
        """Connects to wherever the sentinels say, without a socket."""

        def connect(self) -> None:
            self.host, self.port = self.connection_pool.get_master_address()

        def can_read(self, timeout: float = 0) -> bool:
            return False

    manager = _Manager()
    pool = _pool_class(True, sentinel=True)(
        "m", manager, max_connections=2, timeout=1, connection_class=Unconnected
    )
    old = pool.get_connection()
    assert (old.host, pool.in_use()) == ("10.0.0.1", 1)
    manager.address = ("10.0.0.2", 6379)  # failover while ``old`` is in use
    new = pool.get_connection()
    assert (new.host, pool.in_use()) == ("10.0.0.2", 2)
    pool.release(old)
    pool.release(new)
    assert pool.in_use() == 0, "the old master's connection is not counted as in use for ever"
    assert len(pool._connections) == 1
