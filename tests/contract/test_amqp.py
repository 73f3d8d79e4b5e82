"""The contract on the RabbitMQ broker, plus what only the RabbitMQ broker promises."""

from __future__ import annotations

import logging
import time
import uuid

import amqp
import pytest

from celeriac.brokers.amqp.broker import AMQPBroker
from celeriac.brokers.amqp.declarations import Declarations
from celeriac.brokers.amqp.wire import delay_level
from celeriac.brokers.base import BrokerOptions
from celeriac.errors import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    QueueMismatchError,
    QueueNotFoundError,
)
from celeriac.protocol.entities import Exchange, Queue
from tests.contract.broker_contract import BrokerContract, labels, out


def _kill_connections(broker: AMQPBroker) -> None:
    """Cut every consumer connection of ``broker`` as a crash would (no AMQP close)."""
    for consumer in list(broker._consumers.values()):
        consumer.connection.transport.sock.close()
        broker._lose(consumer)


class TestAMQPBroker(BrokerContract):
    cross_queue_fifo = False
    counts_scheduled = False
    priority_arguments = {"x-max-priority": 9}

    @pytest.fixture(autouse=True)
    def _url(self, amqp_url):
        self.url = amqp_url

    def make_broker(self, options: BrokerOptions) -> AMQPBroker:
        return AMQPBroker(self.url, options)

    @pytest.fixture
    def raw(self, amqp_url):
        """A plain py-amqp channel on the test vhost."""
        from celeriac.brokers.amqp.connection import parse_url

        p = parse_url(amqp_url)
        connection = amqp.Connection(
            p.address, userid=p.userid, password=p.password, virtual_host=p.virtual_host
        )
        connection.connect()
        channel = connection.channel()
        channel.auto_decode = False
        yield channel
        connection.close()

    # -- the lease tests, as RabbitMQ has them: a delivery lives as long as its connection -------

    def test_expired_lease_is_delivered_again(self, broker, q):
        broker.publish([out(q, "x")])
        (first,) = broker.fetch([q], 1, 0, "dying")
        _kill_connections(broker)
        (again,) = broker.fetch([q], 1, 3, "c2")
        assert labels([again]) == labels([first])
        assert again.deliveries == 2

    def test_extended_lease_is_not_delivered_again(self, short_lease, q):
        short_lease.publish([out(q, "x")])
        short_lease.fetch([q], 1, 0, "alive")
        assert short_lease.fetch([q], 1, 0.6, "other") == []
        assert short_lease.extend_leases(["alive"]) == 0  # nothing to renew on RabbitMQ
        assert short_lease.queue_length(q).reserved == 1

    def test_poison_message_goes_to_dead_letters_after_delivery_limit(self, short_lease, q):
        short_lease.publish([out(q, "poison")])
        assert short_lease.fetch([q], 1, 0, "c1")
        _kill_connections(short_lease)
        assert short_lease.fetch([q], 1, 3, "c2")  # 2nd delivery
        _kill_connections(short_lease)
        assert short_lease.fetched_dead_letters() == []
        assert short_lease.fetch([q], 1, 1, "c3") == []  # a 3rd would pass the limit of 2
        dead = short_lease.dead_letters(queue=q)
        assert len(dead) == 1 and "2 times" in dead[0].reason
        (reported,) = short_lease.fetched_dead_letters()  # reported once, as by every broker
        assert (reported.queue, reported.reason) == (q, dead[0].reason)
        assert short_lease.fetched_dead_letters() == []

    def test_started_message_is_never_delivered_again_and_counts_as_running(self, broker, q):
        broker.publish([out(q, "once"), out(q, "waiting")])
        started, _waiting = broker.fetch([q], 2, 0, "c1")
        broker.mark_started([started])
        length = broker.queue_length(q)
        assert (length.running, length.reserved) == (1, 1)
        _kill_connections(broker)
        again = broker.fetch([q], 2, 3, "c2")
        assert labels(again) == ["waiting"]
        broker.ack([started, *again])
        assert broker.queue_length(q).total == 0

    def test_consumer_lost_releases_at_once(self, broker, q):
        # as in the contract, except the order: RabbitMQ puts the lost consumer's running
        # message back at the head, celeriac's count makes it a copy at the back
        broker.publish([out(q, str(i)) for i in range(3)])
        running, *_unstarted = broker.fetch([q], 3, 0, "child-1")
        assert broker.consumer_lost("child-1", [running.tag], "killed by SIGKILL") == []
        again = broker.fetch([q], 3, 0, "child-2")
        assert sorted(labels(again)) == ["0", "1", "2"]
        assert {label: d.deliveries for label, d in zip(labels(again), again, strict=True)} == {
            "0": 2,
            "1": 1,
            "2": 1,
        }

    def test_started_message_of_a_dead_node_goes_to_dead_letters(self, broker, q):
        # RabbitMQ forgets a message once it is acked: early ack is at most once, as in Celery,
        # and nothing is left for another node to recover
        broker.publish([out(q, "lost with its node")])
        (started,) = broker.fetch([q], 1, 0, "dead-node/1")
        broker.mark_started([started])
        _kill_connections(broker)
        assert broker.recover_lost("node died") == []
        assert broker.fetch([q], 1, 0.3, "c2") == []
        assert broker.queue_length(q).total == 0

    def test_mark_started_reports_a_lease_another_consumer_took_over(self, broker, q):
        # RabbitMQ's lease is the connection: a stalled consumer loses its deliveries when the
        # connection closes (consumer_timeout, a missed heartbeat), not when a lease time passes
        broker.publish([out(q, "once")])
        (stalled,) = broker.fetch([q], 1, 0, "stalled-node/1")
        _kill_connections(broker)
        (taken,) = broker.fetch([q], 1, 3, "live-node/1")
        assert broker.mark_started([taken]) == []
        assert labels([taken]) == labels([stalled])
        assert broker.mark_started([stalled]) == [stalled]
        assert broker.queue_length(q).running == 1
        broker.ack([taken])
        assert broker.queue_length(q).total == 0
        assert broker.dead_letter_count(q) == 0

    def test_consumer_lost_before_any_task_counts_what_it_held_up_to_the_dead_letters(self, broker, q):
        # RabbitMQ hands back a dead consumer's messages itself (redelivered), and each such
        # redelivery counts: a message whose consumers keep dying reaches the dead letters
        broker.publish([out(q, "kills-at-fetch")])
        for attempt in range(1, 4):  # delivery_limit=3
            got: list = []
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                got = broker.fetch([q], 1, 1, f"child-{attempt}")
            (d,) = got
            assert d.deliveries == attempt
            _kill_connections(broker)
        deadline = time.monotonic() + 5
        while broker.dead_letter_count(q) == 0 and time.monotonic() < deadline:
            assert broker.fetch([q], 1, 0.2, "child-4") == []
        (letter,) = broker.dead_letters(queue=q)
        assert "3 times" in letter.reason
        assert broker.fetched_dead_letters()[0].reason == letter.reason

    def test_deliveries_of_a_lost_connection_must_not_start(self, broker, q):
        broker.publish([out(q, "a"), out(q, "b")])
        got = broker.fetch([q], 2, 0, "c")
        assert broker.still_held(got) == got
        _kill_connections(broker)
        assert broker.still_held(got) == []
        assert broker.mark_started(got[:1]) == got[:1]
        again = []
        deadline = time.monotonic() + 5
        while len(again) < 2 and time.monotonic() < deadline:
            again += broker.fetch([q], 2, 1, "c2")
        assert sorted(labels(again)) == ["a", "b"]
        assert {d.deliveries for d in again} == {2}

    # -- what only the RabbitMQ broker promises ------------------------------------------------

    def test_celery_layout_direct_exchange_named_after_the_queue(self, broker, q, raw):
        broker.declare_queue(Queue(q))
        broker.publish([out(q, "plain")])
        # Celery's own declaration of the same queue is equivalent: no PRECONDITION_FAILED
        raw.exchange_declare(q, "direct", durable=True, auto_delete=False)
        _, ready, _ = raw.queue_declare(q, durable=True, auto_delete=False)
        assert ready == 1
        message = raw.basic_get(q, no_ack=True)
        assert message.properties["content_type"] == "application/json"
        assert message.properties["delivery_mode"] == 2
        assert message.delivery_info["exchange"] == q and message.delivery_info["routing_key"] == q
        assert message.headers["task"] == "tests.noop"
        assert message.properties["correlation_id"] == message.headers["id"]

    def test_topic_exchange_routes_by_key(self, broker, q, raw):
        broker.declare_queue(Queue(q, Exchange(f"{q}-topic", type="topic"), routing_key="jobs.#"))
        raw.basic_publish(
            amqp.Message(
                b"[[], {}, {}]", content_type="application/json", application_headers={"task": "t", "id": "1"}
            ),
            exchange=f"{q}-topic",
            routing_key="jobs.video.encode",
        )
        (got,) = broker.fetch([q], 1, 3, "c")
        assert got.envelope.headers["task"] == "t"

    def test_conflicting_declaration_names_both_definitions_and_the_fix(self, broker, q, raw):
        raw.queue_declare(q, durable=True, auto_delete=False)
        with pytest.raises(ConfigurationError) as caught:
            broker.declare_queue(Queue(q, durable=False))
        text = str(caught.value)
        assert "PRECONDITION_FAILED" in text and "durable" in text
        assert "'true'" in text and "durable=False" in text
        assert f"rabbitmqctl delete_queue {q}" in text
        broker.declare_queue(Queue(q))  # the broker is still usable afterwards

    def test_conflicting_exchange_is_named_as_an_exchange(self, broker, q, raw):
        raw.exchange_declare(f"{q}-x", "fanout", durable=True, auto_delete=False)
        with pytest.raises(ConfigurationError, match=rf"exchange '{q}-x' already exists.*type='direct'"):
            broker.declare_queue(Queue(q, Exchange(f"{q}-x", type="direct")))

    def test_passive_declare_of_a_missing_queue_is_queue_not_found(self, broker, q):
        with pytest.raises(QueueNotFoundError, match=f"NOT_FOUND.*'{q}'") as caught:
            broker.admin.call("looking up a queue", lambda c: c.queue_declare(q, passive=True))
        assert isinstance(caught.value.__cause__, amqp.exceptions.NotFound), "chained to the driver's error"
        assert broker.queue_length(q).ready == 0  # the admin channel starts clean afterwards
        assert broker.dead_letters(queue=q) == []

    def test_redeclare_with_other_arguments_is_queue_mismatch(self, broker, q, raw):
        raw.queue_declare(q, durable=True, auto_delete=False)

        def declare(channel):
            channel.queue_declare(q, durable=False, auto_delete=False)

        with pytest.raises(QueueMismatchError, match="PRECONDITION_FAILED") as caught:
            broker.admin.call(f"declaring queue {q!r}", declare)
        mismatch = caught.value
        assert (mismatch.kind, mismatch.argument, mismatch.declared, mismatch.existing) == (
            "queue",
            "durable",
            "false",
            "true",
        )
        assert isinstance(mismatch.__cause__, amqp.exceptions.PreconditionFailed)
        assert not isinstance(mismatch, BrokerConnectionError)

    def test_redeclare_of_an_exchange_of_another_type_is_an_exchange_mismatch(self, broker, q, raw):
        raw.exchange_declare(f"{q}-x", "fanout", durable=True, auto_delete=False)

        def declare(channel):
            channel.exchange_declare(f"{q}-x", "direct", durable=True, auto_delete=False)

        with pytest.raises(QueueMismatchError) as caught:
            broker.admin.call(f"declaring exchange {q}-x", declare)
        assert caught.value.kind == "exchange" and caught.value.argument is None

    def test_unreachable_broker_is_a_broker_connection_error(self, q):
        broker = AMQPBroker("amqp://guest:guest@127.0.0.1:1//", BrokerOptions(publish_retry=False))
        with pytest.raises(BrokerConnectionError, match="cannot reach RabbitMQ"):
            broker.publish([out(q, "x")])
        with pytest.raises(BrokerConnectionError):
            broker.queue_length(q)

    def test_transient_queue_is_not_durable_and_messages_not_persistent(self, broker, q, raw):
        broker.declare_queue(Queue(q, durable=False))
        broker.publish([out(q, "t", persistent=False)])
        with pytest.raises(amqp.exceptions.PreconditionFailed):
            raw.queue_declare(q, durable=True, auto_delete=False)  # it exists as non-durable

    def test_transient_fallback_declares_durable_with_transient_messages(self, amqp_url, q, raw, caplog):
        broker = AMQPBroker(
            amqp_url,
            BrokerOptions(transport_options={"transient_queues": "durable", "transient_message_ttl": 60}),
        )
        try:
            with caplog.at_level(logging.WARNING, "celeriac.rabbitmq"):
                broker.declare_queue(Queue(q, durable=False))
                broker.declare_queue(Queue(q + "-2", durable=False))
            broker.publish([out(q, "t", persistent=True)])
            # durable, with the TTL: Celery-style redeclaration with these arguments is accepted
            raw.queue_declare(q, durable=True, auto_delete=False, arguments={"x-message-ttl": 60000})
            message = raw.basic_get(q, no_ack=True)
            assert message.properties["delivery_mode"] == 1
            # asked for explicitly: no warning
            assert not [r for r in caplog.records if "transient_nonexcl_queues" in r.getMessage()]
        finally:
            broker.close()

    def test_refused_transient_queue_falls_back_once(self, broker, q, raw, caplog, monkeypatch):
        """RabbitMQ 4.3 refuses a non-durable shared queue (and closes the connection); the
        broker declares it durable instead, keeps its messages transient and warns once."""
        refused = []
        real = amqp.Channel.queue_declare

        def queue_declare(channel, queue="", passive=False, durable=False, exclusive=False, *args, **kwargs):
            if not durable and not exclusive and not passive:
                refused.append(queue)
                raise amqp.exceptions.InternalError(
                    "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated. Its use is not "
                    "permitted per the configuration"
                )
            return real(channel, queue, passive, durable, exclusive, *args, **kwargs)

        monkeypatch.setattr(amqp.Channel, "queue_declare", queue_declare)
        with caplog.at_level(logging.WARNING, "celeriac.rabbitmq"):
            broker.declare_queue(Queue(q, durable=False))
            broker.declare_queue(Queue(q + "-b", durable=False))
            broker.publish([out(q, "t", persistent=True)])
        assert refused == [q]  # the second queue is declared durable without trying
        assert broker.transient_fallback
        assert sum("transient_nonexcl_queues" in r.getMessage() for r in caplog.records) == 1
        real(raw, q, durable=True, auto_delete=False)  # it exists, durable
        assert raw.basic_get(q, no_ack=True).properties["delivery_mode"] == 1

    def test_quorum_queue(self, broker, q):
        broker.declare_queue(Queue(q, queue_arguments={"x-queue-type": "quorum"}))
        broker.publish([out(q, str(i)) for i in range(3)])
        got = broker.fetch([q], 3, 3, "c")
        assert labels(got) == ["0", "1", "2"]
        broker.ack(got)
        assert broker.queue_length(q).ready == 0

    def test_window_is_basic_qos(self, broker, q):
        broker.publish([out(q, str(i)) for i in range(10)])
        first = []
        while len(first) < 3:  # pushed deliveries may arrive in more than one read
            first += broker.fetch([q], 3, 3, "c")
        assert labels(first) == ["0", "1", "2"]
        # the broker sends no more than the window while it is unsettled
        assert broker.fetch([q], 3, 0.3, "c") == []
        assert broker.queue_length(q).ready == 7
        assert labels(broker.fetch([q], 3, 3, "c", ack=first)) == ["3", "4", "5"]

    def test_garbage_is_delivered_for_the_worker_to_dead_letter(self, broker, q, raw):
        broker.declare_queue(Queue(q))
        raw.basic_publish(amqp.Message(b"\xff\xfe not json"), exchange="", routing_key=q)
        (got,) = broker.fetch([q], 1, 3, "c")
        assert got.envelope.body == b"\xff\xfe not json"
        broker.reject([got], requeue=False, reason="cannot decode body")
        (letter,) = broker.dead_letters(queue=q)
        assert letter.reason == "cannot decode body"
        assert letter.envelope.body == b"\xff\xfe not json"

    def test_dead_letter_headers_carry_the_reason(self, broker, q, raw):
        broker.publish([out(q, "bad")])
        got = broker.fetch([q], 1, 0, "c")
        broker.reject(got, requeue=False, reason="unknown task 'x'")
        letters = []
        while (message := raw.basic_get("celeriac.dead", no_ack=False)) is not None:
            letters.append(message)
        (ours,) = [m for m in letters if m.headers["x-celeriac-queue"] == q]
        assert ours.headers["x-celeriac-reason"] == "unknown task 'x'"
        assert ours.headers["x-celeriac-deliveries"] == 1
        assert ours.properties["delivery_mode"] == 2

    def test_countdown_from_a_producer_that_does_not_delay_is_held_back(self, broker, q, raw):
        """Celery publishes countdown tasks at once; the broker holds them until due."""
        from datetime import UTC, datetime, timedelta

        broker.declare_queue(Queue(q))
        eta = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
        raw.basic_publish(
            amqp.Message(b"[[], {}, {}]", application_headers={"task": "t", "id": "1", "eta": eta}),
            exchange="",
            routing_key=q,
        )
        started = time.time()
        (got,) = broker.fetch([q], 1, 5, "c")
        assert time.time() - started >= 0.29
        assert "x-death" not in got.envelope.headers

    def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(self, broker, q):
        import os

        broker.publish([out(q, "parent-before")])
        parent_pool = broker.pool_stats()
        pid = os.fork()
        if pid == 0:  # the child: publish through the inherited broker object, then leave
            code = 1
            try:
                assert broker.pool_stats().created == 0  # nothing inherited
                broker.publish([out(q, "child")])
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        broker.publish([out(q, "parent-after")])  # the parent's connection still works
        assert broker.pool_stats().created == parent_pool.created
        got = broker.fetch([q], 3, 0, "c")
        assert labels(got) == ["parent-before", "child", "parent-after"]

    def test_housekeeping_compacts_the_queue_registry(self, broker, q, amqp_url, monkeypatch):
        import celeriac.brokers.amqp.sidequeues as amqp_side

        for _ in range(3):  # three processes declaring the same queue
            other = AMQPBroker(amqp_url)
            other.declare_queue(Queue(q))
            other.close()
        monkeypatch.setattr(amqp_side, "REGISTRY_COMPACT_S", 0.0)
        broker.housekeeping()
        names = []
        connection_broker = AMQPBroker(amqp_url)
        try:
            connection_broker.side_queues._read_all(
                "celeriac.queues", lambda ms: names.extend(bytes(m.body).decode() for m in ms) or []
            )
        finally:
            connection_broker.close()
        assert names.count(q) == 1

    def test_a_queue_deleted_after_it_was_declared_is_declared_again_not_lost(self, broker, q, raw, caplog):
        broker.publish([out(q, "before")])
        raw.queue_delete(q)  # the queue and its message are gone; the broker still thinks it exists
        with caplog.at_level(logging.WARNING, "celeriac.rabbitmq"):
            broker.publish([out(q, "after")])
        assert "came back unrouted" in caplog.text
        assert labels(broker.fetch([q], 5, 0, "c")) == ["after"]

    def test_a_message_no_queue_takes_even_after_declaring_again_is_an_error(
        self, broker, q, raw, monkeypatch
    ):
        broker.publish([out(q, "before")])
        raw.queue_delete(q)
        monkeypatch.setattr(Declarations, "redeclare", lambda self, exchange, key, message: None)
        with pytest.raises(BrokerError, match="routed 1 message.*to no queue"):
            broker.publish([out(q, "lost?")])

    def test_a_deleted_delay_queue_is_declared_again(self, broker, q, raw):
        broker.publish([out(q, "soon", eta=time.time() + 0.6)])
        raw.queue_delete("celeriac.delay.09")  # 512 ms, the first hop of a 0.6 s countdown
        broker.publish([out(q, "soon again", eta=time.time() + 0.6)])
        got = []
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            got += broker.fetch([q], 5, 1, "c")
        assert labels(got) == ["soon again"]

    def test_a_scheduled_message_waits_in_one_delay_queue_and_arrives_once(self, broker, q):
        for level in range(5, 13):  # every short delay queue exists, as on a busy broker
            broker.declarations.ensure_delay(level)
        due = time.time() + 0.3
        broker.publish([out(q, "once", eta=due)])
        got, arrived = [], None
        deadline = time.monotonic() + 1.5  # long after it is due: any copy would be here too
        while time.monotonic() < deadline:
            got += broker.fetch([q], 5, 0.2, "c")
            if got and arrived is None:
                arrived = time.time()
        assert labels(got) == ["once"]
        assert due <= arrived < due + 0.5

    def test_delay_levels(self):
        assert delay_level(0.001) == 5
        assert delay_level(1.0) == 9  # 512 ms, then the rest
        assert delay_level(10**9) == 31

    def test_publish_waits_for_confirms_and_pool_is_measured(self, broker, q):
        broker.publish([out(q, str(i)) for i in range(500)])
        assert broker.queue_length(q).ready == 500  # confirmed: already in the queue
        stats = broker.pool_stats()
        assert stats.limit == 10 and stats.created == 1 and stats.acquired >= 1 and stats.in_use == 0

    def test_pool_limit_error_names_the_setting(self, amqp_url, q):
        broker = AMQPBroker(amqp_url, BrokerOptions(pool_limit=1, pool_timeout=0.1))
        try:
            with broker.pool.channel(), pytest.raises(BrokerError, match="broker_pool_limit"):
                broker.publish([out(q, "x")])
            assert broker.pool_stats().timeouts == 1
        finally:
            broker.close()

    def test_bad_urls_and_options_are_named(self):
        with pytest.raises(ConfigurationError, match="port is not a number"):
            AMQPBroker("amqp://localhost:abc//")
        with pytest.raises(ConfigurationError, match="transient_queues"):
            AMQPBroker("amqp://localhost//", BrokerOptions(transport_options={"transient_queues": "maybe"}))
        with pytest.raises(ConfigurationError, match="not known to the RabbitMQ broker"):
            AMQPBroker("amqp://localhost//", BrokerOptions(transport_options={"visibility_timeout": 3}))

    def test_unreachable_broker_is_a_clear_error(self, q):
        broker = AMQPBroker("amqp://guest:secret@127.0.0.1:1//", BrokerOptions(publish_retry=False))
        with pytest.raises(BrokerError, match=r"cannot reach RabbitMQ at amqp://guest:\*\*\*@127.0.0.1:1//"):
            broker.publish([out(q, "x")])

    def test_wrong_vhost_is_a_clear_error(self, q):
        broker = AMQPBroker(f"amqp://guest:guest@127.0.0.1:5672/no-such-{uuid.uuid4().hex[:6]}")
        with pytest.raises(BrokerError, match="vhost"):
            broker.declare_queue(Queue(q))

    def test_queue_length_counts_the_consumers_of_any_client(self, broker, q, raw):
        broker.publish([out(q, "a")])
        monitor = self.make_broker(BrokerOptions())
        try:
            assert monitor.queue_lengths([q])[0].consumers == 0
            raw.basic_consume(q, consumer_tag="another-client", callback=lambda message: None)
            assert monitor.queue_lengths([q])[0].consumers == 1
            raw.basic_cancel("another-client")
            assert monitor.queue_lengths([q])[0].consumers == 0
        finally:
            monitor.close()
