"""The fault-injection suite's private RabbitMQ node (chaos/rabbit_node.py): a confirmed persistent
message in a durable queue survives a SIGKILL of the whole node and a restart on the same data,
and the system's node is left alone."""

from __future__ import annotations

import contextlib
import uuid

import amqp
import psutil
import pytest

from chaos.rabbit_node import RabbitNode, answers, server_binary
from tests import rabbitmq_server

pytestmark = pytest.mark.process


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


@pytest.mark.timeout(300)  # two node starts: a few seconds each, up to 90 s on a loaded machine
def test_rabbit_node_keeps_a_confirmed_persistent_message_across_kill_and_restart(tmp_path):
    try:
        server_binary()
    except RuntimeError as exc:
        rabbitmq_server.unavailable(str(exc))
    system_node_up = answers("127.0.0.1", 5672)
    node = RabbitNode(tmp_path / "rabbit")
    connection: amqp.Connection | None = None
    processes: list[psutil.Process] = []
    try:
        node.start()
        assert node.port != 5672
        connection = amqp.Connection(
            f"127.0.0.1:{node.port}", userid="guest", password="guest", confirm_publish=True
        )
        connection.connect()
        channel = connection.channel()
        durable, transient = f"durable-{uuid.uuid4().hex[:6]}", f"transient-{uuid.uuid4().hex[:6]}"
        channel.queue_declare(durable, durable=True, auto_delete=False)
        channel.queue_declare(transient, durable=False, auto_delete=False)
        # with confirm_publish, basic_publish returns once the broker confirmed the message
        channel.basic_publish(amqp.Message(b"kept", delivery_mode=2), exchange="", routing_key=durable)
        channel.basic_publish(amqp.Message(b"lost", delivery_mode=1), exchange="", routing_key=transient)
        assert node.pid is not None
        processes = _tree(node.pid)

        node.kill()
        assert [p for p in processes if p.is_running()] == []
        with contextlib.suppress(Exception):
            connection.collect()
        node.restart()

        connection = amqp.Connection(f"127.0.0.1:{node.port}", userid="guest", password="guest")
        connection.connect()
        channel = connection.channel()
        assert channel.queue_declare(durable, passive=True).message_count == 1
        message = channel.basic_get(durable, no_ack=True)
        assert (message.body, message.properties["delivery_mode"]) == (b"kept", 2)
        with pytest.raises(amqp.NotFound):  # a transient queue does not outlive its node
            channel.queue_declare(transient, passive=True)
        assert len(node.start_seconds) == 2
    finally:
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.collect()
        if node.pid is not None:
            processes += _tree(node.pid)
        node.stop()
    assert [p for p in processes if p.is_running()] == []
    assert answers("127.0.0.1", 5672) == system_node_up  # the system's node was left alone
