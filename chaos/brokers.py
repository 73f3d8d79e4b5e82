"""The brokers a chaos run uses: private servers it may kill, and the way to write bad input into each.

SQLite needs no server (each run has its own file). Redis and RabbitMQ run as private
servers on free loopback ports, started once per chaos run, durable (Redis with
``appendfsync always``, RabbitMQ with durable queues, persistent messages and publisher
confirms) so that a kill -9 tests celeriac and not a broker configured to forget.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaos.run import Run


class Setup:
    """One broker kind; subclasses start its server and know how to hurt it."""

    name = ""

    def open(self, directory: Path) -> None:
        """Start what the broker needs (once per chaos run)."""

    def env(self, run_dir: Path) -> dict[str, str]:
        """``CELERIAC_*`` settings for a run whose files go in ``run_dir``."""
        raise NotImplementedError

    def target(self) -> tuple[str, int]:
        """Where a proxy in front of this broker forwards to."""
        raise NotImplementedError(f"{self.name} has no network path")

    def kill(self) -> None:
        raise NotImplementedError(f"{self.name} has no broker process")

    def restart(self) -> None:
        raise NotImplementedError(f"{self.name} has no broker process")

    def garbage(self, run: Run) -> int:
        """Write malformed messages straight into ``run.queue``; how many."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop what :meth:`open` started, always."""


class SQLiteSetup(Setup):
    name = "sqlite"

    def env(self, run_dir: Path) -> dict[str, str]:
        return {
            "CELERIAC_BROKER_URL": f"sqlite:///{run_dir / 'broker.db'}",
            "CELERIAC_RESULT_BACKEND": f"sqlite:///{run_dir / 'results.db'}",
        }

    def garbage(self, run: Run) -> int:
        path = run.env["CELERIAC_BROKER_URL"].removeprefix("sqlite:///")
        rows = [
            b"{not json",  # not JSON at all
            json.dumps({"headers": {"id": "x"}}).encode(),  # JSON, fields missing
            json.dumps([1, 2, 3]).encode(),  # JSON of the wrong shape
        ]
        with sqlite3.connect(path, timeout=30) as conn:
            for meta in rows:
                conn.execute(
                    "INSERT INTO messages (queue, state, priority, published_at, meta, body) "
                    "VALUES (?, 0, 0, ?, ?, ?)",
                    (run.queue, time.time(), meta, b"[[], {}, {}]"),
                )
        return len(rows)


class _ServerSetup(Setup):
    """A broker that runs as a private server (``self.node``): the proxy, kill and restart
    act on it."""

    node: Any

    def target(self) -> tuple[str, int]:
        return ("127.0.0.1", self.node.port)

    def kill(self) -> None:
        self.node.kill()

    def restart(self) -> None:
        self.node.restart()

    def close(self) -> None:
        if hasattr(self, "node"):
            self.node.stop()


class RedisSetup(_ServerSetup):
    name = "redis"

    def open(self, directory: Path) -> None:
        from chaos.redis_node import RedisNode

        self.node = RedisNode(directory / "redis").start()

    def env(self, run_dir: Path) -> dict[str, str]:
        import redis

        redis.Redis.from_url(self.node.url).flushall()
        return {"CELERIAC_BROKER_URL": self.node.url, "CELERIAC_RESULT_BACKEND": self.node.url}

    def garbage(self, run: Run) -> int:
        import redis

        client = redis.Redis.from_url(self.node.url)
        items = [b"not json", b'{"body": 1}', json.dumps({"headers": {"id": "x"}}).encode()]
        client.lpush(run.queue, *items)
        client.close()
        return len(items)


class RabbitSetup(_ServerSetup):
    name = "rabbitmq"

    def open(self, directory: Path) -> None:
        from chaos.rabbit_node import RabbitNode

        self.node = RabbitNode(directory / "rabbitmq")
        self.node.start()

    def env(self, run_dir: Path) -> dict[str, str]:
        return {
            "CELERIAC_BROKER_URL": self.node.url,
            "CELERIAC_RESULT_BACKEND": f"sqlite:///{run_dir / 'results.db'}",
        }

    def garbage(self, run: Run) -> int:
        import amqp

        bodies = [
            (b"\xff\xfe not json", "application/json", {"task": "chaos.work", "id": "x"}),
            (b'{"no": "list"}', "application/json", {"task": "chaos.work", "id": "y"}),
            (b"[[], {}, {}]", "application/x-unknown", {"task": "chaos.work", "id": "z"}),
        ]
        conn = amqp.Connection(f"127.0.0.1:{self.node.port}", userid="guest", password="guest")
        conn.connect()
        try:
            channel = conn.channel()
            channel.confirm_select()
            for body, content_type, headers in bodies:
                message = amqp.Message(body, content_type=content_type, application_headers=headers)
                message.properties["delivery_mode"] = 2
                channel.basic_publish(message, exchange="", routing_key=run.queue)
        finally:
            conn.close()
        return len(bodies)


SETUPS: dict[str, type[Setup]] = {"sqlite": SQLiteSetup, "redis": RedisSetup, "rabbitmq": RabbitSetup}
