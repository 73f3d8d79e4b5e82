"""decode(): bad input comes back as InvalidMessage with a reason, never as an exception."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from celeriac.protocol import Envelope, InvalidMessage, TaskMessage, decode, encode
from celeriac.protocol.serializers import JSON, PICKLE

ACCEPT_JSON = frozenset({JSON})
TASK_ID = "9b2f7c7e-0d5f-4f5e-8e7a-3c1d2b4a5f60"
NAME = "proj.tasks.add"


def good_envelope() -> Envelope:
    return encode(TaskMessage(id=TASK_ID, task=NAME, args=(1, 2)))


def with_headers(**changes: Any) -> Envelope:
    envelope = good_envelope()
    headers = {**envelope.headers, **changes}
    return dataclasses.replace(envelope, headers={k: v for k, v in headers.items() if v is not _DROP})


def with_body(body: bytes) -> Envelope:
    return dataclasses.replace(good_envelope(), body=body)


_DROP = object()


def invalid(envelope: Envelope, accept: frozenset[str] = ACCEPT_JSON, max_bytes: int | None = None):
    result = decode(envelope, accept, max_bytes)
    assert isinstance(result, InvalidMessage), f"expected InvalidMessage, got {result!r}"
    return result


def test_well_formed_message_decodes():
    assert isinstance(decode(good_envelope(), ACCEPT_JSON, 1024), TaskMessage)


def test_non_json_body_is_invalid_and_keeps_task_id_and_name():
    result = invalid(with_body(b"{this is not json"))
    assert "cannot decode application/json body" in result.reason
    assert (result.task_id, result.task_name) == (TASK_ID, NAME)


@pytest.mark.parametrize(
    "payload",
    [{"args": [1]}, [[1, 2], {}], [[1], {}, {}, "extra"], "just a string", 42],
    ids=["object", "two-items", "four-items", "string", "number"],
)
def test_body_that_is_not_args_kwargs_embed_is_invalid(payload):
    result = invalid(with_body(orjson.dumps(payload)))
    assert "body must be [args, kwargs, embed]" in result.reason
    assert result.task_id == TASK_ID


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ([{"a": 1}, {}, None], "task args must be a list"),
        ([[1], [1, 2], None], "kwargs must be an object"),
        ([[1], {}, [1]], "embed must be an object"),
    ],
)
def test_wrongly_typed_body_parts_are_invalid(payload, words):
    assert words in invalid(with_body(orjson.dumps(payload))).reason


def test_protocol_v1_body_is_refused_with_a_hint():
    body = orjson.dumps({"task": NAME, "id": TASK_ID, "args": [1, 2], "kwargs": {}, "retries": 0})
    result = invalid(with_body(body))
    assert "protocol v1 is not supported" in result.reason
    assert "protocol 2" in result.reason


@pytest.mark.parametrize("task", [_DROP, None, "", 12, ["proj.add"]], ids=repr)
def test_missing_or_invalid_task_header_is_invalid(task):
    result = invalid(with_headers(task=task))
    assert "header 'task'" in result.reason
    assert not result.task_name
    assert result.task_id == TASK_ID


@pytest.mark.parametrize("task_id", [_DROP, None, "", 1234], ids=repr)
def test_missing_or_invalid_id_header_is_invalid(task_id):
    result = invalid(with_headers(id=task_id))
    assert "header 'id'" in result.reason
    assert not result.task_id
    assert result.task_name == NAME


def test_headers_that_are_not_a_mapping_are_invalid():
    result = invalid(dataclasses.replace(good_envelope(), headers=["task", NAME]))  # type: ignore[arg-type]
    assert "headers must be a mapping" in result.reason
    assert result.task_id is None


@pytest.mark.parametrize("retries", [-1, "3", 1.5, True], ids=repr)
def test_bad_retries_header_is_invalid(retries):
    result = invalid(with_headers(retries=retries))
    assert "'retries'" in result.reason
    assert "non-negative integer" in result.reason
    assert (result.task_id, result.task_name) == (TASK_ID, NAME)


def test_null_retries_means_zero():
    decoded = decode(with_headers(retries=None), ACCEPT_JSON, None)
    assert isinstance(decoded, TaskMessage)
    assert decoded.retries == 0


@pytest.mark.parametrize("key", ["eta", "expires"])
@pytest.mark.parametrize("value", ["tomorrow", "2030-13-45T99:00:00", 1735689600], ids=repr)
def test_bad_eta_or_expires_header_is_invalid(key, value):
    result = invalid(with_headers(**{key: value}))
    assert f"header {key!r}" in result.reason
    assert "ISO 8601" in result.reason
    assert result.task_id == TASK_ID


@pytest.mark.parametrize(
    ("timelimit", "words"),
    [
        ("30", "must be [hard, soft]"),
        ([30], "must be [hard, soft]"),
        ([30, 20, 10], "must be [hard, soft]"),
        ([-1, None], "timelimit[0]"),
        ([None, "soon"], "timelimit[1]"),
        ([True, None], "timelimit[0]"),
    ],
    ids=repr,
)
def test_bad_timelimit_header_is_invalid(timelimit, words):
    result = invalid(with_headers(timelimit=timelimit))
    assert words in result.reason
    assert result.task_id == TASK_ID


@pytest.mark.parametrize(("key", "value"), [("parent_id", 5), ("group_index", "1"), ("shadow", ["x"])])
def test_bad_optional_headers_are_invalid(key, value):
    assert repr(key) in invalid(with_headers(**{key: value})).reason


def test_bad_priority_property_is_invalid():
    envelope = good_envelope()
    bad = dataclasses.replace(envelope, properties={**envelope.properties, "priority": "high"})
    assert "'priority'" in invalid(bad).reason


def test_body_over_the_size_limit_is_invalid_and_names_the_setting():
    envelope = good_envelope()
    result = invalid(envelope, max_bytes=envelope.size - 1)
    assert f"{envelope.size} bytes" in result.reason
    assert f"task_message_max_bytes={envelope.size - 1}" in result.reason
    assert (result.task_id, result.task_name) == (TASK_ID, NAME)


def test_body_exactly_at_the_size_limit_is_accepted():
    envelope = good_envelope()
    assert isinstance(decode(envelope, ACCEPT_JSON, envelope.size), TaskMessage)


def test_pickle_body_is_refused_unless_accepted():
    envelope = encode(TaskMessage(id=TASK_ID, task=NAME, args=(1, 2), content_type=PICKLE))
    result = invalid(envelope)
    assert "application/x-python-serialize" in result.reason
    assert "accept_content" in result.reason
    assert "pickle" in result.reason
    assert (result.task_id, result.task_name) == (TASK_ID, NAME)

    accepted = decode(envelope, frozenset({JSON, PICKLE}), None)
    assert isinstance(accepted, TaskMessage)
    assert list(accepted.args) == [1, 2]


def test_unknown_content_type_is_invalid():
    envelope = dataclasses.replace(good_envelope(), content_type="application/x-yaml")
    assert "application/x-yaml" in invalid(envelope).reason
