"""How an envelope is stored in a row of the SQLite broker, and what a row that cannot be read becomes.

A row holds the body as it is and the rest of the envelope as a JSON object in the
``meta`` column (headers, properties, content type and encoding). celeriac writes
only rows it can read back; a row that another program wrote, or a damaged file,
may not be: :func:`from_row` then raises one of :data:`UNREADABLE`, and the lease
path sends the row to the dead letters with :func:`unreadable_reason`.
"""

from __future__ import annotations

import orjson

from celeriac.protocol.message import Envelope

#: What :func:`from_row` raises on a row it cannot read: not JSON, not a JSON object, a field missing.
UNREADABLE = (orjson.JSONDecodeError, TypeError, KeyError)


def to_meta(envelope: Envelope) -> bytes:
    """The ``meta`` column of ``envelope``."""
    return orjson.dumps(
        {
            "headers": envelope.headers,
            "properties": envelope.properties,
            "content_type": envelope.content_type,
            "content_encoding": envelope.content_encoding,
        }
    )


def from_row(meta: bytes, body: bytes) -> Envelope:
    """The envelope of a row; raises one of :data:`UNREADABLE` if its ``meta`` cannot be read."""
    fields = orjson.loads(meta)
    return Envelope(
        body=bytes(body),
        content_type=fields["content_type"],
        content_encoding=fields["content_encoding"],
        headers=fields["headers"],
        properties=fields["properties"],
    )


def for_listing(meta: bytes, body: bytes) -> Envelope:
    """The envelope of a row for listing: an unreadable one becomes a bare body, never an error."""
    try:
        return from_row(meta, body)
    except UNREADABLE:
        raw = body.encode() if isinstance(body, str) else bytes(body)
        return Envelope(raw, "application/octet-stream", "binary", {}, {})


def unreadable_reason(exc: Exception) -> str:
    """The dead-letter reason of a row whose envelope raised ``exc``."""
    if isinstance(exc, orjson.JSONDecodeError):
        what = f"is not valid JSON ({exc})"
    elif isinstance(exc, KeyError):
        what = f"has no {exc.args[0]!r} field"
    else:  # meta not a JSON object, or a column of the wrong type (TEXT for the body, say)
        what = f"or its body has the wrong type ({exc})"
    return f"the message cannot be read: its envelope (the row's meta column) {what}"
