"""Content types: how task arguments and results become bytes and back.

JSON is the default and is encoded the way kombu 5.3+ does it, so Celery and
celeriac read each other's messages: ``datetime``, ``date``, ``time``,
``Decimal``, ``bytes`` and ``UUID`` travel as ``{"__type__": ..., "__value__": ...}``.
Tuples arrive as lists, as with any JSON task queue.

Pickle can run arbitrary code when it is read, so it is refused unless the user
names it in ``accept_content`` (worker side) and ``task_serializer`` (producer side).
"""

from __future__ import annotations

import base64
import pickle
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

from celeriac.errors import ContentDisallowedError, DecodeError, ProtocolError

JSON = "application/json"
PICKLE = "application/x-python-serialize"

#: Short names used in settings (``task_serializer='json'``) → MIME types.
ALIASES: dict[str, str] = {"json": JSON, "pickle": PICKLE}


@dataclass(frozen=True, slots=True)
class Serializer:
    """One content type: its short name, MIME type and codec."""

    name: str
    content_type: str
    content_encoding: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


# -- JSON, kombu-compatible ------------------------------------------------------------------

_TYPE_MARK = b'"__type__"'


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return {"__type__": "datetime", "__value__": obj.isoformat()}
    if isinstance(obj, date):
        return {"__type__": "date", "__value__": obj.isoformat()}
    if isinstance(obj, time):
        return {"__type__": "time", "__value__": obj.isoformat()}
    if isinstance(obj, Decimal):
        return {"__type__": "decimal", "__value__": str(obj)}
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        try:
            return {"__type__": "bytes", "__value__": raw.decode("utf-8")}
        except UnicodeDecodeError:
            return {"__type__": "base64", "__value__": base64.b64encode(raw).decode("ascii")}
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "date": lambda v: datetime.fromisoformat(v).date(),
    "time": time.fromisoformat,
    "decimal": Decimal,
    "uuid": lambda v: uuid.UUID(**v) if isinstance(v, dict) else uuid.UUID(v),
    "bytes": lambda v: v.encode("utf-8"),
    "base64": base64.b64decode,
}


def _revive(obj: Any) -> Any:
    """Replace kombu's ``{"__type__", "__value__"}`` markers with Python objects."""
    if isinstance(obj, dict):
        if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
            decoder = _DECODERS.get(obj["__type__"])
            if decoder is None:
                raise DecodeError(f"unsupported JSON type marker {obj['__type__']!r}")
            return decoder(obj["__value__"])
        return {key: _revive(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_revive(value) for value in obj]
    return obj


_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
_SCALARS = (str, int, float, bool, type(None))


def _has_uuid(obj: Any) -> bool:
    kind = type(obj)
    if kind is list or kind is tuple:
        values: Any = obj
    elif kind is dict:
        values = obj.values()
    else:
        return isinstance(obj, uuid.UUID)
    return any(type(value) not in _SCALARS and _has_uuid(value) for value in values)


def _mark_uuids(obj: Any) -> Any:
    if isinstance(obj, uuid.UUID):
        return {"__type__": "uuid", "__value__": {"hex": obj.hex, "version": obj.version}}
    if isinstance(obj, list | tuple):
        return [_mark_uuids(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _mark_uuids(v) for k, v in obj.items()}
    return obj


def json_dumps(obj: Any) -> bytes:
    """Encode ``obj`` as JSON bytes with kombu's type markers.

    orjson writes ``UUID`` values as plain strings on its own, so they are
    replaced by kombu's marker first (after a cheap scan, only when present).
    """
    if _has_uuid(obj):
        obj = _mark_uuids(obj)
    return orjson.dumps(obj, default=_json_default, option=_JSON_OPTIONS)


def json_loads(raw: bytes | str) -> Any:
    """Decode JSON; type markers are only walked for when present."""
    obj = orjson.loads(raw)
    marked = _TYPE_MARK in raw if isinstance(raw, bytes) else '"__type__"' in raw
    return _revive(obj) if marked else obj


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


_REGISTRY: dict[str, Serializer] = {
    JSON: Serializer("json", JSON, "utf-8", json_dumps, json_loads),
    PICKLE: Serializer("pickle", PICKLE, "binary", _pickle_dumps, pickle.loads),
}


def content_type_of(name: str) -> str:
    """Return the MIME type for a short name or MIME type; raise for unknown ones."""
    content_type = ALIASES.get(name, name)
    if content_type not in _REGISTRY:
        known = ", ".join(sorted(ALIASES))
        raise ProtocolError(f"unknown serializer {name!r}: use one of {known}")
    return content_type


def get(name: str) -> Serializer:
    """Return the serializer for a short name (``json``) or MIME type."""
    return _REGISTRY[content_type_of(name)]


def accepted(names: Iterable[str]) -> frozenset[str]:
    """Normalise an ``accept_content`` list to a set of MIME types."""
    return frozenset(content_type_of(name) for name in names)


def loads(raw: bytes, content_type: str, accept: frozenset[str]) -> Any:
    """Decode ``raw`` if its content type is accepted, else raise ContentDisallowedError."""
    if content_type not in accept:
        allowed = ", ".join(sorted(accept)) or "nothing"
        hint = ""
        if content_type == PICKLE:
            hint = "; pickle is refused unless 'pickle' is added to accept_content"
        raise ContentDisallowedError(
            f"content type {content_type!r} is not accepted (accept_content allows {allowed}){hint}"
        )
    try:
        return _REGISTRY[content_type].loads(raw)
    except ProtocolError:
        raise
    except Exception as exc:
        raise DecodeError(f"cannot decode {content_type} body: {exc}") from exc


def dumps(obj: Any, serializer: Serializer) -> bytes:
    """Encode ``obj`` with ``serializer``; a value it cannot encode is a ProtocolError."""
    try:
        return serializer.dumps(obj)
    except (TypeError, ValueError, orjson.JSONEncodeError, pickle.PicklingError) as exc:
        raise ProtocolError(f"cannot encode with {serializer.name}: {exc}") from exc
