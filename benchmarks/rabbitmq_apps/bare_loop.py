"""The ceiling of ``bench_rabbitmq.py``: the least a py-amqp consumer can do, no framework.

Run as ``python bare_loop.py`` (the benchmark starts two). Each process opens one
connection and one channel, sets ``basic.qos`` to 100, ``basic.consume``s the
queue ``$BENCH_QUEUE`` (default ``celery``, durable, as celeriac's default queue)
and for each delivery JSON-decodes the body (``[args, kwargs, embed]``), looks the
task up by the ``task`` header and calls it; every 100th delivery acks everything
so far (``multiple=True``). No error handling, no bookkeeping: a figure to measure
frameworks against, not a worker.

:func:`task_message` builds a message in the same layout (Celery's protocol 2 on
AMQP: the protocol headers as AMQP headers, the JSON body), for the latency test
and for when celeriac's own messages cannot be had.

``BENCH_AMQP_URL``, ``BENCH_QUEUE``; ``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp
import orjson
from _marks import mark, record

BATCH = 100


def noop() -> None:
    mark()


def latency(sent: float) -> None:
    record(sent)


TASKS: dict[str, Callable[..., Any]] = {"bench.noop": noop, "bench.latency": latency}


def connect(url: str) -> amqp.Connection:
    """A py-amqp connection to ``url`` (``amqp://user:password@host:port/vhost``), opened."""
    parts = urlsplit(url)
    conn = amqp.Connection(
        f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}",
        userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=unquote(parts.path[1:]) or "/",
    )
    conn.connect()
    return conn


def declare(channel: Any, queue: str) -> None:
    """The queue as the bare loop and its producer use it: durable, no arguments."""
    channel.queue_declare(queue, durable=True, auto_delete=False)


def task_message(task: str, args: list[Any], persistent: bool = True) -> amqp.Message:
    """A task message as a Celery producer publishes it on AMQP (protocol 2)."""
    task_id = str(uuid.uuid4())
    body = orjson.dumps([args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(tuple(args)),
        "kwargsrepr": "{}",
        "origin": f"bench@{os.getpid()}",
        "ignore_result": True,
    }
    return amqp.Message(
        body,
        content_type="application/json",
        content_encoding="utf-8",
        application_headers=headers,
        delivery_mode=2 if persistent else 1,
        correlation_id=task_id,
        priority=0,
    )


def run(url: str, queue: str) -> None:
    conn = connect(url)
    channel = conn.channel()
    channel.auto_decode = False  # keep bodies as bytes: orjson reads them
    declare(channel, queue)
    channel.basic_qos(0, BATCH, False)
    loads = orjson.loads
    seen = 0

    def on_message(message: amqp.Message) -> None:
        nonlocal seen
        args, kwargs, _embed = loads(message.body)
        TASKS[message.headers["task"]](*args, **kwargs)
        seen += 1
        if seen % BATCH == 0:
            channel.basic_ack(message.delivery_tag, multiple=True)

    channel.basic_consume(queue, callback=on_message)
    while True:
        conn.drain_events()


if __name__ == "__main__":
    run(os.environ["BENCH_AMQP_URL"], os.environ.get("BENCH_QUEUE", "celery"))
