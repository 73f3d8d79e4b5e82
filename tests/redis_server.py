"""Real Redis servers for tests: the one on 127.0.0.1:6379, or a private one.

``shared_redis_url()`` answers the URL of a Redis that tests may share (each
test uses its own key prefix): the server on the standard port if one answers,
else a private ``redis-server`` started from PATH for the session. Where neither
is possible the tests skip, except with ``CI=true``, where they fail.

:class:`RedisServer` starts a private server on a free port in a directory of
its own (tests that restart or kill Redis use one, never the shared server) and
stops it by pid; it is the fault-injection suite's :class:`chaos.redis_node.RedisNode`
with the skip rule above.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from chaos.redis_node import RedisNode, answers

STANDARD = ("127.0.0.1", 6379)


def unavailable(reason: str) -> None:
    """Skip, or fail under CI where Redis must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Redis is required under CI=true: {reason}")
    pytest.skip(reason)


class RedisServer(RedisNode):
    """A private redis-server (:class:`chaos.redis_node.RedisNode`) for tests: a server that
    cannot start skips the test (fails under CI); ``stop`` is a SHUTDOWN (SIGTERM) unless
    ``kill=True``, and ``restart`` stops it that way before starting it again."""

    def __init__(self, directory: Path, appendonly: bool = False) -> None:
        super().__init__(directory, appendonly=appendonly, start_timeout=10)

    def start(self) -> RedisServer:
        try:
            super().start()
        except RuntimeError as exc:
            unavailable(f"a private redis-server did not start: {exc}")
        return self

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.kill()
        else:
            super().stop()

    def restart(self) -> None:
        """Stop (Redis writes its append-only file on SIGTERM) and start on the same port."""
        self.stop()
        self.start()


def shared_redis_url(tmp_root: Path) -> tuple[str, RedisServer | None]:
    """The URL of a Redis tests may share, and the private server started for it (if any)."""
    if answers(*STANDARD):
        return "redis://127.0.0.1:6379/0", None
    server = RedisServer(tmp_root / "shared-redis").start()
    return server.url, server


def kill_when_blocked(client: Any, client_id: int, timeout: float = 10.0) -> bool:
    """Kill the connection ``client_id`` (``CLIENT KILL ID``) as soon as Redis reports it
    waiting in a blocking command; False if it never did within ``timeout``.

    Redis offers nothing to wait on here, so this asks ``CLIENT LIST`` until the
    blocked flag shows; the loop ends as soon as the command is underway.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        clients = client.client_list(client_id=[client_id])
        if clients and "b" in clients[0]["flags"]:
            client.client_kill_filter(_id=client_id)
            return True
    return False
