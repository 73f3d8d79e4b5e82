"""Content types: kombu-compatible JSON type markers, and pickle refused unless accepted."""

from __future__ import annotations

import json
import pickle
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from celeriac.errors import ContentDisallowedError, DecodeError, ProtocolError
from celeriac.protocol import serializers
from celeriac.protocol.serializers import JSON, PICKLE

SAMPLE_UUID = uuid.UUID("6f1c0e0e-7a1b-4c2d-9e3f-0a1b2c3d4e5f")

# (value, the marker kombu.utils.json writes for it)
MARKED = [
    (
        datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        {"__type__": "datetime", "__value__": "2024-01-02T03:04:05.006000+00:00"},
    ),
    (
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
        {"__type__": "datetime", "__value__": "2024-01-02T03:04:05-05:00"},
    ),
    (datetime(2024, 1, 2, 3, 4, 5), {"__type__": "datetime", "__value__": "2024-01-02T03:04:05"}),
    (date(2024, 1, 2), {"__type__": "date", "__value__": "2024-01-02"}),
    (time(3, 4, 5, 123456), {"__type__": "time", "__value__": "03:04:05.123456"}),
    (Decimal("1.10"), {"__type__": "decimal", "__value__": "1.10"}),
    (b"plain bytes", {"__type__": "bytes", "__value__": "plain bytes"}),
    (b"\xff\x00\x10", {"__type__": "base64", "__value__": "/wAQ"}),
]


@pytest.mark.parametrize(("value", "marker"), MARKED, ids=lambda v: type(v).__name__)
def test_json_writes_kombu_type_markers(value, marker):
    assert orjson.loads(serializers.json_dumps({"v": value})) == {"v": marker}


@pytest.mark.parametrize(("value", "marker"), MARKED, ids=lambda v: type(v).__name__)
def test_json_type_markers_round_trip_to_the_same_value_and_type(value, marker):
    revived = serializers.json_loads(serializers.json_dumps([value, {"nested": [value]}]))
    assert revived == [value, {"nested": [value]}]
    assert type(revived[0]) is type(value)


def test_uuid_is_written_with_kombus_uuid_marker():
    encoded = orjson.loads(serializers.json_dumps([SAMPLE_UUID]))[0]
    assert isinstance(encoded, dict), f"UUID was written as {encoded!r}, not as a kombu marker"
    assert encoded["__type__"] == "uuid"
    assert encoded["__value__"]["hex"] == SAMPLE_UUID.hex


def test_uuid_round_trips_as_a_uuid():
    revived = serializers.json_loads(serializers.json_dumps({"id": SAMPLE_UUID}))
    assert revived == {"id": SAMPLE_UUID}
    assert isinstance(revived["id"], uuid.UUID)


@pytest.mark.parametrize(
    "value",
    [{"hex": SAMPLE_UUID.hex}, {"hex": SAMPLE_UUID.hex, "version": SAMPLE_UUID.version}],
    ids=["kombu-5.3", "kombu-5.4"],
)
def test_uuid_markers_from_kombu_are_read(value):
    raw = json.dumps([{"__type__": "uuid", "__value__": value}])
    assert serializers.json_loads(raw.encode()) == [SAMPLE_UUID]


def test_markers_written_by_stdlib_json_with_spaces_are_read():
    # kombu uses json.dumps, which puts a space after ':'
    raw = json.dumps({"when": {"__type__": "date", "__value__": "2024-03-04"}})
    assert serializers.json_loads(raw.encode()) == {"when": date(2024, 3, 4)}
    assert serializers.json_loads(raw) == {"when": date(2024, 3, 4)}


def test_unknown_type_marker_is_a_decode_error():
    raw = orjson.dumps({"__type__": "frobnicator", "__value__": 1})
    with pytest.raises(DecodeError, match="frobnicator"):
        serializers.json_loads(raw)


def test_dict_with_more_keys_than_a_marker_is_left_alone():
    value = {"__type__": "date", "__value__": "2024-03-04", "other": 1}
    assert serializers.json_loads(serializers.json_dumps(value)) == value


def test_sets_are_sent_as_lists_and_tuples_arrive_as_lists():
    assert serializers.json_loads(serializers.json_dumps({"s": {3}, "t": (1, 2)})) == {"s": [3], "t": [1, 2]}


def test_unencodable_value_is_a_protocol_error_naming_the_serializer():
    with pytest.raises(ProtocolError, match="json") as info:
        serializers.dumps([object()], serializers.get("json"))
    assert "object" in str(info.value)


def test_short_names_and_mime_types_resolve_to_the_same_serializer():
    assert serializers.get("json") is serializers.get(JSON)
    assert serializers.get("pickle") is serializers.get(PICKLE)
    assert serializers.accepted(["json", PICKLE]) == frozenset({JSON, PICKLE})


def test_unknown_serializer_name_lists_the_known_ones():
    with pytest.raises(ProtocolError, match="yaml") as info:
        serializers.get("yaml")
    assert "json" in str(info.value) and "pickle" in str(info.value)


class _Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle payload ran')",))


def test_pickle_is_refused_when_not_in_accept_content_and_is_never_unpickled():
    payload = pickle.dumps(_Boom())
    with pytest.raises(ContentDisallowedError) as info:
        serializers.loads(payload, PICKLE, frozenset({JSON}))
    message = str(info.value)
    assert "application/x-python-serialize" in message
    assert "pickle is refused unless 'pickle' is added to accept_content" in message


def test_pickle_is_read_when_accepted():
    raw = serializers.dumps({"when": date(2024, 1, 1)}, serializers.get("pickle"))
    assert serializers.loads(raw, PICKLE, frozenset({JSON, PICKLE})) == {"when": date(2024, 1, 1)}


def test_json_refused_when_only_pickle_is_accepted():
    with pytest.raises(ContentDisallowedError, match="application/json"):
        serializers.loads(b"[]", JSON, frozenset({PICKLE}))


def test_garbage_json_is_a_decode_error():
    with pytest.raises(DecodeError, match="cannot decode application/json"):
        serializers.loads(b"\x00\x01", JSON, frozenset({JSON}))
