"""TaskMessage ↔ envelope: Celery's task message protocol v2, field by field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from celeriac.protocol import PERSISTENT, TRANSIENT, Envelope, InvalidMessage, TaskMessage, decode, encode
from celeriac.protocol.serializers import JSON

ACCEPT_JSON = frozenset({JSON})
TASK_ID = "6d6f4e3c-6f1e-4c47-9a47-2a0b0e0c1d2e"
ROOT_ID = "0f0c2a3e-1111-4c47-9a47-000000000001"
PARENT_ID = "0f0c2a3e-2222-4c47-9a47-000000000002"


def full_message(**changes: object) -> TaskMessage:
    """A message with every header set to a non-default value."""
    message = TaskMessage(
        id=TASK_ID,
        task="proj.tasks.add",
        args=(2, 3),
        kwargs={"z": 1},
        retries=2,
        eta=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        expires=datetime(2030, 1, 2, 4, 0, 0, tzinfo=UTC),
        time_limit=30.0,
        soft_time_limit=20.0,
        root_id=ROOT_ID,
        parent_id=PARENT_ID,
        group="group-1",
        group_index=4,
        shadow="add-alias",
        origin="gen42@host",
        ignore_result=True,
        reply_to="reply-queue",
        priority=7,
        delivery_mode=TRANSIENT,
        extra_headers={"x-trace": "abc", "stamps": {"s": 1}},
    )
    return dataclasses.replace(message, **changes)


def roundtrip(message: TaskMessage) -> TaskMessage:
    decoded = decode(encode(message), ACCEPT_JSON, None)
    assert not isinstance(decoded, InvalidMessage), decoded
    return decoded


def test_encode_lays_out_headers_properties_and_body_as_a_celery_5_producer():
    message = TaskMessage(
        id=TASK_ID,
        task="proj.tasks.add",
        args=(2, 2),
        kwargs={},
        root_id=TASK_ID,
        origin="gen1234@worker-host",
        reply_to="7c1a7e8a-reply",
        priority=0,
        delivery_mode=PERSISTENT,
    )
    envelope = encode(message)

    # What celery.app.amqp.AMQP.as_task_v2 builds for add.apply_async((2, 2)),
    # with kombu's delivery_mode and priority properties.
    assert envelope.headers == {
        "lang": "py",
        "task": "proj.tasks.add",
        "id": TASK_ID,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": TASK_ID,
        "parent_id": None,
        "argsrepr": "(2, 2)",
        "kwargsrepr": "{}",
        "origin": "gen1234@worker-host",
        "ignore_result": False,
    }
    assert envelope.properties == {
        "correlation_id": TASK_ID,
        "reply_to": "7c1a7e8a-reply",
        "delivery_mode": 2,
        "priority": 0,
    }
    assert envelope.content_type == "application/json"
    assert envelope.content_encoding == "utf-8"
    assert orjson.loads(envelope.body) == [
        [2, 2],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]


def test_root_id_defaults_to_the_task_id_as_in_celery():
    envelope = encode(TaskMessage(id=TASK_ID, task="t"))
    assert envelope.headers["root_id"] == TASK_ID


def test_priority_property_is_left_out_when_unset():
    envelope = encode(TaskMessage(id=TASK_ID, task="t"))
    assert "priority" not in envelope.properties


def test_every_header_survives_encode_then_decode():
    message = full_message()
    decoded = roundtrip(message)
    assert decoded == dataclasses.replace(message, args=list(message.args))


def test_header_values_on_the_wire_use_celery_spelling():
    headers = encode(full_message()).headers
    assert headers["eta"] == "2030-01-02T03:04:05+00:00"
    assert headers["expires"] == "2030-01-02T04:00:00+00:00"
    assert headers["timelimit"] == [30.0, 20.0]
    assert headers["retries"] == 2
    assert headers["argsrepr"] == "(2, 3)"
    assert headers["kwargsrepr"] == "{'z': 1}"


def test_delivery_mode_and_priority_travel_as_properties():
    properties = encode(full_message()).properties
    assert properties["delivery_mode"] == TRANSIENT
    assert properties["priority"] == 7
    assert properties["correlation_id"] == TASK_ID
    assert properties["reply_to"] == "reply-queue"


def test_unknown_headers_pass_through_unchanged():
    envelope = encode(full_message())
    assert envelope.headers["x-trace"] == "abc"
    assert envelope.headers["stamps"] == {"s": 1}
    assert roundtrip(full_message()).extra_headers == {"x-trace": "abc", "stamps": {"s": 1}}


def test_extra_headers_cannot_override_protocol_headers():
    envelope = encode(full_message(extra_headers={"task": "evil.task", "id": "other"}))
    assert envelope.headers["task"] == "proj.tasks.add"
    assert envelope.headers["id"] == TASK_ID


def test_naive_eta_and_expires_are_sent_as_utc():
    naive = datetime(2030, 5, 6, 7, 8, 9)
    envelope = encode(TaskMessage(id=TASK_ID, task="t", eta=naive, expires=naive))
    assert envelope.headers["eta"] == "2030-05-06T07:08:09+00:00"
    assert envelope.headers["expires"] == "2030-05-06T07:08:09+00:00"


def test_eta_keeps_its_offset_and_decodes_to_the_same_instant():
    plus_two = timezone(timedelta(hours=2))
    eta = datetime(2030, 5, 6, 9, 0, tzinfo=plus_two)
    envelope = encode(TaskMessage(id=TASK_ID, task="t", eta=eta))
    assert envelope.headers["eta"] == "2030-05-06T09:00:00+02:00"
    decoded = roundtrip(TaskMessage(id=TASK_ID, task="t", eta=eta))
    assert decoded.eta == datetime(2030, 5, 6, 7, 0, tzinfo=UTC)
    assert decoded.eta_timestamp == eta.timestamp()


def test_naive_eta_from_another_producer_is_read_as_utc():
    envelope = encode(TaskMessage(id=TASK_ID, task="t"))
    headers = {**envelope.headers, "eta": "2030-05-06T07:08:09", "expires": "2030-05-06T08:00:00"}
    decoded = decode(dataclasses.replace(envelope, headers=headers), ACCEPT_JSON, None)
    assert isinstance(decoded, TaskMessage)
    assert decoded.eta == datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert decoded.expires == datetime(2030, 5, 6, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("hard", "soft"), [(None, None), (10.0, None), (None, 5.5), (60.0, 30.0)])
def test_time_limits_round_trip_as_hard_soft_pair(hard, soft):
    message = TaskMessage(id=TASK_ID, task="t", time_limit=hard, soft_time_limit=soft)
    assert encode(message).headers["timelimit"] == [hard, soft]
    decoded = roundtrip(message)
    assert (decoded.time_limit, decoded.soft_time_limit) == (hard, soft)


def test_missing_delivery_mode_property_decodes_as_persistent():
    envelope = encode(TaskMessage(id=TASK_ID, task="t", delivery_mode=TRANSIENT))
    properties = {k: v for k, v in envelope.properties.items() if k != "delivery_mode"}
    decoded = decode(dataclasses.replace(envelope, properties=properties), ACCEPT_JSON, None)
    assert isinstance(decoded, TaskMessage)
    assert decoded.delivery_mode == PERSISTENT


def test_message_from_a_celery_5_3_producer_decodes_and_keeps_stamps():
    body = orjson.dumps(
        [[4, 4], {"scale": 2}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    envelope = Envelope(
        body=body,
        content_type="application/json",
        content_encoding="utf-8",
        headers={
            "lang": "py",
            "task": "proj.tasks.mul",
            "id": TASK_ID,
            "shadow": None,
            "eta": "2030-01-01T00:00:00.000000+00:00",
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 1,
            "timelimit": [None, 12],
            "root_id": ROOT_ID,
            "parent_id": PARENT_ID,
            "argsrepr": "(4, 4)",
            "kwargsrepr": "{'scale': 2}",
            "origin": "gen99@celery-host",
            "ignore_result": False,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        properties={
            "correlation_id": TASK_ID,
            "reply_to": "c5a1",
            "delivery_mode": 2,
            "priority": 0,
            "delivery_info": {"exchange": "", "routing_key": "celery"},
        },
    )
    decoded = decode(envelope, ACCEPT_JSON, None)
    assert isinstance(decoded, TaskMessage)
    assert (decoded.task, decoded.id, decoded.args, decoded.kwargs) == (
        "proj.tasks.mul",
        TASK_ID,
        [4, 4],
        {"scale": 2},
    )
    assert decoded.retries == 1
    assert decoded.eta == datetime(2030, 1, 1, tzinfo=UTC)
    assert (decoded.time_limit, decoded.soft_time_limit) == (None, 12.0)
    assert (decoded.root_id, decoded.parent_id, decoded.origin) == (ROOT_ID, PARENT_ID, "gen99@celery-host")
    assert decoded.extra_headers == {"replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}}
    # sent again (a retry), the Celery-only headers are still there
    assert encode(decoded).headers["replaced_task_nesting"] == 0


def test_with_changes_returns_a_copy_and_leaves_the_original_alone():
    message = full_message()
    changed = message.with_changes(retries=5)
    assert changed.retries == 5
    assert message.retries == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.retries = 9  # type: ignore[misc]
