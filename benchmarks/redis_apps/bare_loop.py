"""The ceiling of ``bench_redis.py``: the least a worker on a Redis list can do, no framework.

Run as ``python bare_loop.py`` (the benchmark starts two). Each process loops:
``BLMPOP`` up to 100 messages from the right end of the list ``$BENCH_QUEUE``
(default ``celery``, where celeriac's durable queue lives), and for each one
decodes the kombu JSON envelope, base64-decodes and JSON-decodes its body
(``[args, kwargs, embed]``), looks the task up by ``headers["task"]`` and calls
it. No acknowledgement, no bookkeeping, no prefetch limit, no error handling:
a figure to measure frameworks against, not a worker.

:func:`kombu_message` builds a message in the same layout (Celery's protocol 2
in kombu's Redis envelope), for the latency test and for when celeriac's own
bytes cannot be had.

``BENCH_REDIS_URL``, ``BENCH_QUEUE``; ``BENCH_DONE_FILE``, ``BENCH_STAMP_FILE``: see ``_marks.py``.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import redis
from _marks import mark, record

BATCH = 100


def noop() -> None:
    mark()


def latency(sent: float) -> None:
    record(sent)


TASKS: dict[str, Callable[..., Any]] = {"bench.noop": noop, "bench.latency": latency}


def kombu_message(task: str, args: list[Any], queue: str = "celery") -> bytes:
    """A task message as a Celery producer pushes it onto a Redis list."""
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
    properties = {
        "correlation_id": task_id,
        "reply_to": "",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    return orjson.dumps(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
    )


def run(url: str, key: str) -> None:
    client = redis.Redis.from_url(url)
    loads, b64decode = orjson.loads, base64.b64decode
    while True:
        reply = client.blmpop(1, 1, key, direction="RIGHT", count=BATCH)
        if not reply:
            continue
        for raw in reply[1]:
            message = loads(raw)
            args, kwargs, _embed = loads(b64decode(message["body"]))
            TASKS[message["headers"]["task"]](*args, **kwargs)


if __name__ == "__main__":
    run(os.environ["BENCH_REDIS_URL"], os.environ.get("BENCH_QUEUE", "celery"))
