"""A real RabbitMQ for tests: the one on 127.0.0.1:5672, started if it is not running.

``session_vhost()`` answers the URL of a vhost made for this test session (deleted
at its end) on the server on the standard port, starting it with
``rabbitmq-server -detached`` when nothing answers there. Where neither works the
tests skip, except with ``CI=true``, where they fail.

Tests that restart the broker or close its connections use :func:`rabbitmqctl`;
every such test leaves the server running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from chaos import rabbit_node

STANDARD = ("127.0.0.1", 5672)


def answers(host: str = STANDARD[0], port: int = STANDARD[1], timeout: float = 1.0) -> bool:
    """True when an AMQP 0-9-1 broker answers on ``host:port``."""
    return rabbit_node.answers(host, port, timeout)


def unavailable(reason: str) -> None:
    """Skip, or fail under CI where RabbitMQ must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"RabbitMQ is required under CI=true: {reason}")
    pytest.skip(reason)


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """Run rabbitmqctl; fail the test with its output when it fails."""
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        unavailable("rabbitmqctl is not on PATH")
    done = subprocess.run([tool, *args], check=False, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def wait_until_answers(timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers():
            return True
        time.sleep(0.2)
    return False


def ensure_running() -> None:
    if answers():
        return
    server = shutil.which("rabbitmq-server")
    if server is None:
        unavailable("nothing answers AMQP on 127.0.0.1:5672 and rabbitmq-server is not on PATH")
    subprocess.run([server, "-detached"], check=False, capture_output=True, timeout=60)
    if not wait_until_answers():
        unavailable("rabbitmq-server -detached did not answer on 127.0.0.1:5672 within 90 s")


def session_vhost() -> tuple[str, str]:
    """Make a vhost for this session; return (its URL, its name)."""
    ensure_running()
    name = f"celeriac-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"amqp://guest:guest@{STANDARD[0]}:{STANDARD[1]}/{name}", name


def restart_app() -> None:
    """Restart RabbitMQ's application (what a broker restart does to queues and messages)."""
    rabbitmqctl("stop_app")
    rabbitmqctl("start_app")
    if not wait_until_answers():
        pytest.fail("RabbitMQ did not come back after start_app")
