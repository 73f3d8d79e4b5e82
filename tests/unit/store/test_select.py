"""Which store an app gets: ``store_from_url`` by scheme, ``select_store`` by settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from celeriac.errors import ConfigurationError
from celeriac.store import SCHEMES, select_store, store_from_url
from celeriac.store.memory import MemoryStore
from celeriac.store.sqlite import SQLiteStore


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'celeriac.db'}"


@pytest.mark.parametrize("scheme", ["sqlite", "db+sqlite", "sqla+sqlite"])
def test_sqlite_urls_give_the_sqlite_store_in_that_file(tmp_path, scheme):
    store = store_from_url(f"{scheme}:///{tmp_path / 'celeriac.db'}")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.db.path == str(tmp_path / "celeriac.db")
    finally:
        store.close()


@pytest.mark.parametrize("url", ["memory://", "cache+memory://"])
def test_memory_urls_give_a_new_memory_store_each_time(url):
    first, second = store_from_url(url), store_from_url(url)
    assert isinstance(first, MemoryStore) and isinstance(second, MemoryStore)
    first.set("k", b"v")
    assert second.get("k") is None, "like memory brokers and backends, each memory:// is its own"


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://localhost:6380/1", "unix:///run/redis.sock?db=0"]
)
def test_redis_urls_give_the_redis_store_without_connecting(url):
    from celeriac.store.redis import DEFAULT_PREFIX, RedisStore

    store = store_from_url(url, prefix="app:")
    assert isinstance(store, RedisStore)
    assert (store.url, store.prefix, store.conn.setting) == (url, "app:", "result_backend")
    assert store_from_url(url).prefix == DEFAULT_PREFIX


def test_a_bad_redis_url_names_the_setting_it_came_from():
    with pytest.raises(ConfigurationError, match=r"broker_url='redis://host:x/0': the port"):
        select_store(None, "redis://host:x/0")


def test_store_modules_are_imported_only_for_their_scheme():
    # a fresh interpreter: other tests of this session may have imported the Redis store
    modules = {module for module, _ in SCHEMES.values()}
    assert modules == {"celeriac.store.sqlite", "celeriac.store.redis", "celeriac.store.memory"}
    code = (
        "import sys; from celeriac.store import store_from_url; store_from_url('memory://'); "
        "assert 'celeriac.store.redis' not in sys.modules and 'redis' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_result_backend_wins_over_the_broker(sqlite_url):
    store = select_store(sqlite_url, "memory://")
    try:
        assert isinstance(store, SQLiteStore)
    finally:
        store.close()


@pytest.mark.parametrize("backend", [None, ""])
def test_without_a_result_backend_the_broker_holds_the_store(sqlite_url, backend):
    store = select_store(backend, sqlite_url)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.url == sqlite_url
    finally:
        store.close()
    assert isinstance(select_store(backend, "memory://"), MemoryStore)


def test_a_redis_broker_holds_the_store_and_errors_name_broker_url():
    from celeriac.store.redis import RedisStore

    store = select_store(None, "redis://localhost:6379/3")
    assert isinstance(store, RedisStore)
    assert store.conn.setting == "broker_url"


@pytest.mark.parametrize(
    "broker", ["amqp://guest:secret@rabbit//", "amqps://rabbit:5671//", "pyamqp://guest@localhost//"]
)
def test_a_rabbitmq_broker_without_a_result_backend_says_to_set_result_backend(broker):
    with pytest.raises(ConfigurationError) as info:
        select_store(None, broker)
    message = str(info.value)
    assert "result_backend" in message
    assert 'result_backend = "redis://' in message and "sqlite:///" in message
    for feature in ("chords", "revoke", "rate limits", "beat"):
        assert feature in message
    assert "secret" not in message


def test_a_rabbitmq_broker_with_a_result_backend_uses_the_backend(sqlite_url):
    store = select_store(sqlite_url, "amqp://guest@rabbit//")
    try:
        assert isinstance(store, SQLiteStore)
    finally:
        store.close()


def test_a_rabbitmq_url_as_result_backend_is_refused_naming_the_setting():
    with pytest.raises(ConfigurationError, match=r"result_backend='amqp://rabbit//': RabbitMQ cannot"):
        store_from_url("amqp://rabbit//")


@pytest.mark.parametrize(
    ("backend", "broker", "setting"),
    [("mongodb://db/0", "memory://", "result_backend"), (None, "kafka://k:9092", "broker_url")],
)
def test_an_unknown_scheme_names_the_setting_and_the_supported_ones(backend, broker, setting):
    with pytest.raises(ConfigurationError, match=rf"^{setting}=.*no store for the scheme") as info:
        select_store(backend, broker)
    assert "redis://" in str(info.value) and "sqlite://" in str(info.value)


@pytest.mark.parametrize("url", ["celeriac.db", None, 42])
def test_something_that_is_not_a_url_is_refused(url):
    with pytest.raises(ConfigurationError, match="is not a URL"):
        store_from_url(url)


def test_an_in_memory_sqlite_store_is_refused():
    with pytest.raises(ConfigurationError, match="in-memory database cannot be shared"):
        store_from_url("sqlite:///:memory:")
