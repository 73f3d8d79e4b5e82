"""Sending: delay / apply_async / send_task / apply_many put the right message on the broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from celeriac import AsyncResult, Celeriac
from celeriac.errors import ConfigurationError, MessageTooLargeError, NotRegisteredError
from celeriac.protocol import PERSISTENT, TRANSIENT, TaskMessage, decode
from celeriac.protocol.serializers import JSON
from celeriac.results.base import PendingResult
from celeriac.states import SUCCESS


@pytest.fixture
def add(app):
    @app.task
    def add(x, y):
        return x + y

    return add


def only_message(app, queue="celery"):
    """The single message waiting on ``queue``, leased and decoded."""
    deliveries = app.broker.fetch([queue], 10, 0, "inspector")
    assert len(deliveries) == 1, f"expected one message on {queue!r}, found {len(deliveries)}"
    delivery = deliveries[0]
    message = decode(delivery.envelope, frozenset({JSON}), None)
    assert isinstance(message, TaskMessage), message
    return delivery, message


def spy_publish(app, monkeypatch):
    """Record every Outgoing the app publishes (and still publish it)."""
    published = []
    publish = app.broker.publish

    def spy(batch):
        published.extend(batch)
        publish(batch)

    monkeypatch.setattr(app.broker, "publish", spy)
    return published


def between(value: datetime, start: datetime, end: datetime) -> bool:
    return start <= value <= end


# -- what delay puts on the wire --------------------------------------------------------------


def test_delay_publishes_a_v2_message_to_the_default_queue(app, add):
    result = add.delay(2, y=3)
    assert isinstance(result, AsyncResult)
    delivery, message = only_message(app)
    headers = delivery.envelope.headers
    assert headers["task"] == add.name
    assert headers["id"] == result.id
    assert headers["root_id"] == result.id
    assert headers["parent_id"] is None
    assert headers["retries"] == 0
    assert headers["origin"] == app.origin
    assert delivery.envelope.properties["correlation_id"] == result.id
    assert delivery.envelope.properties["delivery_mode"] == PERSISTENT
    assert delivery.persistent is True
    assert orjson.loads(delivery.envelope.body)[:2] == [[2], {"y": 3}]
    assert (message.eta, message.expires) == (None, None)


def test_apply_async_with_explicit_task_id(app, add):
    result = add.apply_async((1, 2), task_id="my-id")
    assert result.id == "my-id"
    assert only_message(app)[1].id == "my-id"


def test_countdown_becomes_an_eta_and_the_message_is_scheduled(app, add, monkeypatch):
    published = spy_publish(app, monkeypatch)
    before = datetime.now(UTC)
    add.apply_async((1, 2), countdown=30)
    after = datetime.now(UTC)
    length = app.broker.queue_length("celery")
    assert (length.ready, length.scheduled) == (0, 1)
    assert app.broker.fetch(["celery"], 10, 0, "c") == []
    [outgoing] = published
    message = decode(outgoing.envelope, frozenset({JSON}), None)
    assert isinstance(message, TaskMessage)
    assert message.eta is not None
    assert between(message.eta, before + timedelta(seconds=30), after + timedelta(seconds=30))
    assert outgoing.eta == message.eta.timestamp()


def test_countdown_as_timedelta(app, add):
    before = datetime.now(UTC)
    add.apply_async((1, 2), countdown=timedelta(minutes=1))
    assert app.broker.queue_length("celery").scheduled == 1
    message, _ = app.build_message(add.name, (1, 2), task=add, countdown=timedelta(minutes=1))
    assert message.eta is not None and message.eta >= before + timedelta(seconds=60)


def test_eta_in_the_past_is_ready_at_once(app, add):
    add.apply_async((1, 2), eta=datetime.now(UTC) - timedelta(seconds=5))
    _, message = only_message(app)
    assert message.eta is not None and message.eta < datetime.now(UTC)


def test_naive_eta_is_read_in_the_configured_timezone(make_app):
    app = make_app(timezone="Europe/Paris")
    message, _ = app.build_message("t", (), eta=datetime(2030, 1, 15, 12, 0))
    assert message.eta == datetime(2030, 1, 15, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert message.eta == datetime(2030, 1, 15, 11, 0, tzinfo=UTC)


def test_eta_as_iso_string(app):
    message, _ = app.build_message("t", (), eta="2030-01-15T12:00:00+00:00")
    assert message.eta == datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


def test_bad_eta_is_a_configuration_error(app):
    with pytest.raises(ConfigurationError, match="ISO 8601"):
        app.build_message("t", (), eta="next tuesday")


def test_expires_in_seconds_becomes_a_utc_datetime(app, add):
    before = datetime.now(UTC)
    add.apply_async((1, 2), expires=60)
    after = datetime.now(UTC)
    delivery, message = only_message(app)
    assert message.expires is not None
    assert between(message.expires, before + timedelta(seconds=60), after + timedelta(seconds=60))
    assert datetime.fromisoformat(delivery.envelope.headers["expires"]) == message.expires


def test_expires_as_datetime_is_kept(app, add):
    when = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
    add.apply_async((1, 2), expires=when)
    assert only_message(app)[1].expires == when


def test_task_expires_option_is_the_default(app):
    @app.task(expires=120)
    def short_lived():
        return None

    before = datetime.now(UTC)
    short_lived.delay()
    message = only_message(app)[1]
    assert message.expires is not None and message.expires >= before + timedelta(seconds=120)


def test_queue_priority_and_delivery_mode_options(app, add):
    add.apply_async((1, 2), queue="reports", priority=7, delivery_mode="transient")
    delivery, message = only_message(app, "reports")
    assert delivery.queue == "reports"
    assert delivery.envelope.properties["priority"] == 7
    assert delivery.envelope.properties["delivery_mode"] == TRANSIENT
    assert delivery.persistent is False
    assert message.priority == 7


def test_higher_priority_message_is_fetched_first(app, add):
    add.apply_async((1, 1), priority=1)
    urgent = add.apply_async((2, 2), priority=9)
    first = app.broker.fetch(["celery"], 1, 0, "c")[0]
    assert first.envelope.headers["id"] == urgent.id


def test_time_limits_travel_in_the_timelimit_header(app, add):
    add.apply_async((1, 2), time_limit=30, soft_time_limit=20)
    delivery, message = only_message(app)
    assert delivery.envelope.headers["timelimit"] == [30, 20]
    assert (message.time_limit, message.soft_time_limit) == (30.0, 20.0)


def test_custom_headers_are_sent(app, add):
    add.apply_async((1, 2), headers={"x-tenant": "acme"})
    delivery, message = only_message(app)
    assert delivery.envelope.headers["x-tenant"] == "acme"
    assert message.extra_headers == {"x-tenant": "acme"}


def test_ignore_result_and_shadow_options(app, add):
    add.apply_async((1, 2), ignore_result=True, shadow="add-shadow")
    headers = only_message(app)[0].envelope.headers
    assert headers["ignore_result"] is True
    assert headers["shadow"] == "add-shadow"


def test_task_ignore_result_option_is_sent(app):
    @app.task(ignore_result=True)
    def fire_and_forget():
        return None

    fire_and_forget.delay()
    assert only_message(app)[0].envelope.headers["ignore_result"] is True


def test_send_task_by_name_needs_no_registration(app):
    result = app.send_task("other.service.task", [1], {"a": 2}, queue="remote")
    _, message = only_message(app, "remote")
    assert (message.task, message.id, message.args, message.kwargs) == (
        "other.service.task",
        result.id,
        [1],
        {"a": 2},
    )


def test_send_task_args_must_be_a_sequence(app):
    with pytest.raises(TypeError, match="list or tuple"):
        app.send_task("t", "abc")  # type: ignore[arg-type]


def test_pickle_serializer_option(make_app):
    app = make_app(task_serializer="pickle", accept_content=["json", "pickle"])
    app.send_task("t", [b"raw"])
    delivery = app.broker.fetch(["celery"], 1, 0, "c")[0]
    assert delivery.envelope.content_type == "application/x-python-serialize"


# -- option checks ----------------------------------------------------------------------------


def test_unknown_apply_async_option_suggests_the_closest(app, add):
    with pytest.raises(ConfigurationError) as info:
        add.apply_async((1, 2), countdwn=10)
    assert "'countdwn'" in str(info.value)
    assert "did you mean 'countdown'?" in str(info.value)
    assert app.broker.queue_length("celery").total == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("priority", "high"),
        ("time_limit", "soon"),
        ("time_limit", -1),
        ("soft_time_limit", "x"),
        ("retries", -3),
        ("retries", "many"),
    ],
)
def test_bad_option_value_is_refused_at_send_naming_the_option(app, add, option, value):
    # every worker would dead-letter such a message (or, for a text priority, fail to fetch)
    with pytest.raises(ConfigurationError, match=option):
        add.apply_async((1, 2), **{option: value})
    assert app.broker.queue_length("celery").total == 0


def test_the_chord_option_goes_into_the_embed_as_celery_sends_it(app, add):
    add.apply_async((1, 2), chord=add.s(1), group_id="g", group_index=0)
    [delivery] = app.broker.fetch(["celery"], 10, 0, "inspector")
    assert orjson.loads(delivery.envelope.body)[2]["chord"]["task"] == add.name


@pytest.mark.parametrize("option", ["link", "link_error", "chain"])
def test_callback_options_must_be_signatures(app, add, option):
    with pytest.raises(ConfigurationError, match=f"{option}=.*expected a signature"):
        add.apply_async((1, 2), **{option: object()})
    assert app.broker.queue_length("celery").total == 0


def test_celery_connection_options_are_accepted_and_ignored(app, add):
    add.apply_async((1, 2), retry=True, retry_policy={"max_retries": 3}, mandatory=False)
    assert app.broker.queue_length("celery").ready == 1


def test_wrong_number_of_arguments_is_a_type_error_before_sending(app, add):
    with pytest.raises(TypeError, match=add.name):
        add.delay(1)
    with pytest.raises(TypeError):
        add.delay(1, 2, 3)
    with pytest.raises(TypeError):
        add.apply_async((1,), {"z": 2})
    assert app.broker.queue_length("celery").total == 0


def test_argument_check_is_off_with_typing_false(app):
    @app.task(typing=False)
    def loose(x):
        return x

    loose.delay(1, 2, 3)
    assert app.broker.queue_length("celery").ready == 1


def test_message_over_task_message_max_bytes_is_refused_at_send(make_app):
    app = make_app(task_message_max_bytes=200)

    @app.task
    def store(blob):
        return len(blob)

    store.delay("x" * 100)
    with pytest.raises(MessageTooLargeError) as info:
        store.delay("x" * 500)
    assert "task_message_max_bytes=200" in str(info.value)
    assert store.name in str(info.value)
    assert app.broker.queue_length("celery").total == 1


def test_unknown_task_name_from_get_task_lists_known_ones(app, add):
    with pytest.raises(NotRegisteredError) as info:
        app.get_task("nope")
    assert add.name in str(info.value)
    assert isinstance(info.value, KeyError)


# -- batches ----------------------------------------------------------------------------------


def test_apply_many_publishes_every_call_in_one_batch(app, add, monkeypatch):
    batches: list[int] = []
    publish = app.broker.publish

    def spy(batch):
        batches.append(len(batch))
        publish(batch)

    monkeypatch.setattr(app.broker, "publish", spy)
    results = add.apply_many([(i, i) for i in range(5)], queue="bulk")
    assert batches == [5]
    assert len({r.id for r in results}) == 5
    fetched = app.broker.fetch(["bulk"], 10, 0, "c")
    assert [d.envelope.headers["id"] for d in fetched] == [r.id for r in results]


def test_apply_many_checks_every_call_before_sending_any(app, add):
    with pytest.raises(TypeError):
        add.apply_many([(1, 2), (1,)])
    assert app.broker.queue_length("celery").total == 0


# -- parent and root ids ----------------------------------------------------------------------


def test_task_sent_from_inside_a_task_carries_parent_and_root_ids(app, inline_worker):
    @app.task
    def child():
        return "child"

    @app.task(bind=True)
    def parent(self):
        return child.delay().id

    top = parent.apply_async(task_id="top-id")
    worker = inline_worker(app)
    worker.run_next()
    child_id = top.get(timeout=1)
    delivery = worker.fetch_one()
    headers = delivery.envelope.headers
    assert headers["id"] == child_id
    assert headers["parent_id"] == "top-id"
    assert headers["root_id"] == "top-id"

    # and one more level down the root stays the same
    worker.run(delivery)
    assert app.AsyncResult(child_id).get(timeout=1) == "child"


def test_grandchild_keeps_the_root_id(app, inline_worker):
    @app.task
    def leaf():
        return None

    @app.task
    def middle():
        return leaf.delay().id

    @app.task
    def root():
        return middle.delay().id

    root.apply_async(task_id="root-id")
    worker = inline_worker(app)
    worker.run_next()
    middle_delivery = worker.fetch_one()
    middle_id = middle_delivery.envelope.headers["id"]
    worker.run(middle_delivery)
    leaf_headers = worker.fetch_one().envelope.headers
    assert leaf_headers["parent_id"] == middle_id
    assert leaf_headers["root_id"] == "root-id"


def test_task_called_directly_has_no_parent(app, add):
    @app.task
    def outer():
        return add.delay(1, 1).id

    outer()  # a plain call, not a worker run
    headers = only_message(app)[0].envelope.headers
    assert headers["parent_id"] is None
    assert headers["root_id"] == headers["id"]


# -- the app object ---------------------------------------------------------------------------


def test_changing_a_worker_setting_keeps_queued_messages_and_results(app, add):
    # e.g. WorkerOptions.from_app applies -c/--prefetch-multiplier to app.conf
    result = add.delay(1, 2)
    app.backend.store(PendingResult("stored-id", SUCCESS, 3))
    app.conf.worker_concurrency = 2
    app.conf.update(worker_prefetch_multiplier=1)
    assert app.broker.queue_length("celery").ready == 1
    assert only_message(app)[1].id == result.id
    assert app.AsyncResult("stored-id").get(timeout=1) == 3


def test_changing_settings_rebuilds_the_router(app, add):
    assert app.build_message(add.name, (1, 2), task=add)[1].queue.name == "celery"
    app.conf.task_default_queue = "elsewhere"
    _, route = app.build_message(add.name, (1, 2), task=add)
    assert route.queue.name == "elsewhere"


def test_celery_is_the_same_class_as_celeriac():
    assert Celeriac is __import__("celeriac").Celery


def test_unknown_broker_scheme_is_a_configuration_error(make_app):
    app = make_app(broker="kafka://localhost:9092")
    with pytest.raises(ConfigurationError, match="unknown broker scheme 'kafka'; supported: amqp://"):
        _ = app.broker


# -- the store --------------------------------------------------------------------------------


def test_the_store_lives_in_the_sqlite_broker_file_and_is_shared_by_its_apps(tmp_path):
    url = f"sqlite:///{tmp_path / 'celeriac.db'}"
    producer, worker = Celeriac("a", broker=url), Celeriac("b", broker=url)
    try:
        assert producer.store.incr("chord:abc") == 1
        assert worker.store.incr("chord:abc") == 2
        assert (tmp_path / "celeriac.db").exists()
    finally:
        producer.close()
        worker.close()


def test_a_rabbitmq_app_without_a_result_backend_is_told_to_set_one():
    app = Celeriac("rabbit", broker="amqp://guest:secret@localhost:5672//")
    with pytest.raises(ConfigurationError) as info:
        app.store  # noqa: B018
    assert "result_backend" in str(info.value)
    assert "secret" not in str(info.value)


def test_the_store_follows_a_change_of_result_backend(tmp_path):
    app = Celeriac("moving", broker="amqp://guest@localhost//")
    app.conf.result_backend = f"sqlite:///{tmp_path / 'results.db'}"
    app.store.set("k", b"v")
    assert app.store.get("k") == b"v"
    app.conf.result_backend = "memory://"
    assert app.store.get("k") is None
    app.close()
