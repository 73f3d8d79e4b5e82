"""The contract on the Redis broker, plus what only the Redis broker promises."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid

import pytest

from celeriac.brokers.base import BrokerOptions
from celeriac.brokers.redis.broker import COUNT_PROPERTY, SEP, RedisBroker, to_kombu
from celeriac.errors import BrokerConnectionError, BrokerError, ConfigurationError
from celeriac.protocol.entities import Queue
from tests.contract.broker_contract import BrokerContract, envelope, labels, out
from tests.redis_server import kill_when_blocked


class TestRedisBroker(BrokerContract):
    lower_priority_first = True
    cross_queue_fifo = False

    @pytest.fixture(autouse=True)
    def _prefix(self, redis_url):
        self.url = redis_url
        self.prefix = f"test-{uuid.uuid4().hex[:8]}:"

    def make_broker(self, options: BrokerOptions) -> RedisBroker:
        options.transport_options["global_keyprefix"] = self.prefix
        return RedisBroker(self.url, options)

    # -- what only the Redis broker promises -----------------------------------------------------

    @pytest.fixture
    def r(self, redis_url):
        import redis

        client = redis.Redis.from_url(redis_url)
        yield client
        keys = list(client.scan_iter(match=f"{self.prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()

    def test_messages_are_kombu_envelopes_on_a_list_named_after_the_queue(self, broker, q, r):
        broker.declare_queue(Queue(q))
        broker.publish([out(q, "plain"), out(q, "urgent-ish", priority=5)])
        assert r.llen(self.prefix + q) == 1
        (raw,) = r.lrange(f"{self.prefix}{q}{SEP}3", 0, -1)
        message = json.loads(raw)
        assert message["content-type"] == "application/json"
        assert message["properties"]["body_encoding"] == "base64"
        assert message["properties"]["delivery_info"] == {"exchange": q, "routing_key": q}
        assert message["properties"]["priority"] == 5
        assert message["headers"]["task"] == "tests.noop"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        assert args == ["urgent-ish"]
        assert r.smembers(f"{self.prefix}_kombu.binding.{q}") == {f"{q}{SEP}{SEP}{q}".encode()}

    def test_a_message_pushed_by_another_producer_is_delivered(self, broker, q, r):
        raw = to_kombu(envelope("foreign"), "celery", q, 0)
        r.lpush(self.prefix + q, raw)
        (got,) = broker.fetch([q], 5, 0, "c")
        assert labels([got]) == ["foreign"]

    def test_garbage_on_the_list_goes_to_the_dead_letters_and_the_rest_is_served(self, broker, q, r):
        broker.publish([out(q, "before")])
        r.lpush(self.prefix + q, b"\x00not json", b'{"no": "envelope"}', b"[1, 2]")
        broker.publish([out(q, "after")])
        got = broker.fetch([q], 10, 0, "c")
        assert labels(got) == ["before", "after"]
        reasons = sorted(d.reason for d in broker.dead_letters(queue=q))
        assert len(reasons) == 3
        assert any("not JSON" in x for x in reasons)
        assert any("needs 'body', 'headers' and 'properties'" in x for x in reasons)
        assert any("not an object" in x for x in reasons)
        reported = broker.fetched_dead_letters()  # for the worker to log
        assert sorted(d.reason for d in reported) == reasons
        assert {d.queue for d in reported} == {q}
        broker.ack(got)
        assert broker.queue_length(q).total == 0

    @pytest.mark.parametrize("durable", [True, False])
    def test_an_unreadable_message_is_reported_with_the_task_id_its_headers_name(self, broker, q, r, durable):
        broker.declare_queue(Queue(q, durable=durable))
        message = json.loads(to_kombu(envelope("x"), "", q, 0))
        message["properties"]["body_encoding"] = "rot13"
        r.lpush(self.prefix + q, json.dumps(message))
        assert broker.fetch([q], 1, 0, "c") == []
        (reported,) = broker.fetched_dead_letters()
        assert "'rot13'" in reported.reason and reported.queue == q
        # the worker fails the result of the task the headers name
        assert reported.envelope.headers["id"] == message["headers"]["id"]
        assert broker.fetched_dead_letters() == []
        (listed,) = broker.dead_letters(queue=q)
        assert listed.envelope.headers["id"] == message["headers"]["id"]

    def test_transient_queue_keeps_no_bookkeeping(self, broker, q, r):
        broker.declare_queue(Queue(q, durable=False))
        broker.publish([out(q, str(i), persistent=False) for i in range(3)])
        got = broker.fetch([q], 3, 0, "fast")
        assert labels(got) == ["0", "1", "2"]
        assert not r.exists(f"{self.prefix}celeriac.held.fast")
        broker.hand_back(got[1:])
        assert labels(broker.fetch([q], 3, 0, "fast")) == ["1", "2"]

    def test_a_transient_message_requeued_by_its_task_carries_its_count_and_kombus_flag(self, broker, q, r):
        broker.declare_queue(Queue(q, durable=False))
        broker.publish([out(q, "again", persistent=False)])
        broker.reject(broker.fetch([q], 1, 0, "fast"), requeue=True)
        message = json.loads(r.lindex(self.prefix + q, 0))
        assert message["properties"]["delivery_info"]["redelivered"] is True  # what a Celery worker reads
        (again,) = broker.fetch([q], 1, 0, "fast")
        assert again.deliveries == 2
        assert COUNT_PROPERTY not in again.envelope.properties  # bookkeeping, not the task's

    def test_a_message_that_landed_for_a_lost_consumer_goes_back(self, broker, q, r):
        # an idle consumer is about to block: its lease covers its landing list
        assert broker._lease([q], 1, "waiter", [], q)[0] == []
        broker.publish([out(q, "landed")])
        # it died in BLMOVE just after the message moved into its landing list
        r.lmove(self.prefix + q, f"{self.prefix}celeriac.landing.waiter", "RIGHT", "LEFT")
        assert broker.queue_length(q).ready == 0
        broker.consumer_lost("waiter", [], "killed while waiting")
        assert labels(broker.fetch([q], 1, 0, "c")) == ["landed"]

    @staticmethod
    def _break(broker, monkeypatch, what: str, after: bool):
        """The next call about ``what`` fails as a broken connection would: before Redis ran
        it, or after (the reply lost). Returns the list of calls broken so far."""
        real, broken = broker.conn.call, []

        def call(description, fn):
            if description.startswith(what) and not broken:
                broken.append(description)
                if after:
                    real(description, fn)
                raise BrokerError(f"{description}: Connection closed by server")
            return real(description, fn)

        monkeypatch.setattr(broker.conn, "call", call)
        return broken

    def test_messages_of_a_fetch_whose_reply_was_lost_are_handed_back(self, broker, q, monkeypatch, caplog):
        broker.publish([out(q, "a"), out(q, "b")])
        broken = self._break(broker, monkeypatch, "fetching", after=True)
        with pytest.raises(BrokerError):
            broker.fetch([q], 10, 0, "c1")
        assert broken and broker.queue_length(q).reserved == 2, "Redis leased them; c1 never saw them"
        got = broker.fetch([q], 10, 0, "c1")
        assert labels(got) == ["a", "b"] and [d.deliveries for d in got] == [1, 1]
        assert "handed 2 message(s) back" in caplog.text
        broker.ack(got)
        assert broker.queue_length(q).total == 0

    def test_after_a_lost_connection_what_redis_holds_but_the_consumer_settled_is_settled_again(self, q, r):
        broker = self.make_broker(BrokerOptions(pool_limit=1))  # one connection: the one killed
        try:
            broker.declare_queue(Queue(q))
            broker.publish([out(q, "late"), out(q, "early"), out(q, "running")])
            late, early, running = broker.fetch([q], 3, 0, "c1")
            assert broker.mark_started([early]) == []
            held, started = f"{self.prefix}celeriac.held.c1", f"{self.prefix}celeriac.started.c1"
            records = r.hgetall(held)
            broker.ack([late, early])
            # Redis is back without the ack: restarted from an older file, or failed over to a
            # replica that had not received it
            r.hset(held, mapping={tag: records[tag.encode()] for tag in (late.tag, early.tag)})
            r.sadd(started, early.tag)
            client_id = broker.conn.call("asking for its id", lambda c: c.client_id())
            killer = threading.Thread(target=kill_when_blocked, args=(r, client_id))
            killer.start()
            with pytest.raises(BrokerConnectionError):
                broker.fetch([f"{q}-idle"], 1, 10, "c1")
            killer.join()
            again = broker.fetch([q], 5, 0, "c1")
            assert labels(again) == ["late"], "late ack: delivered again (at least once)"
            assert r.sismember(started, early.tag) == 0, "early ack: it ran; acked, not run again"
            assert broker.queue_length(q).reserved == 2, "the running one stays with its consumer"
            broker.ack([running, *again])
            assert broker.queue_length(q).total == 0
        finally:
            broker.close()

    @pytest.mark.parametrize("how", ["ack", "fetch"])
    def test_an_ack_that_failed_is_sent_again(self, broker, q, monkeypatch, how):
        broker.publish([out(q, "a"), out(q, "b")])
        first, second = broker.fetch([q], 2, 0, "c1")
        settle = broker.ack if how == "ack" else (lambda batch: broker.fetch([q], 1, 0, "c1", ack=batch))
        self._break(broker, monkeypatch, "acking" if how == "ack" else "fetching", after=False)
        with pytest.raises(BrokerError):
            settle([first])
        settle([first])  # the child keeps what it could not settle and sends it again
        assert broker.queue_length(q).reserved == 1
        broker.ack([second])
        assert broker.queue_length(q).total == 0

    def test_a_connection_killed_while_a_fetch_waits_is_a_broker_connection_error(self, q, r):
        broker = self.make_broker(BrokerOptions(pool_limit=1))  # one connection: the one killed
        try:
            broker.declare_queue(Queue(q, durable=False))  # a transient queue waits in one BRPOP
            client_id = broker.conn.call("asking for its id", lambda c: c.client_id())
            killed: list[bool] = []
            killer = threading.Thread(target=lambda: killed.append(kill_when_blocked(r, client_id)))
            killer.start()
            with pytest.raises(BrokerConnectionError, match="waiting for messages") as info:
                broker.fetch([q], 1, 10, "c1")
            killer.join()
            assert killed == [True]
            assert info.value.__cause__ is not None, "chained to the driver's error"
            broker.publish([out(q, "after")])  # the broker goes on with a new connection
            assert labels(broker.fetch([q], 1, 0, "c1")) == ["after"]
        finally:
            broker.close()

    def test_idle_consumer_wakes_at_once_for_a_new_message(self, broker, q):
        broker.declare_queue(Queue(q))
        times: list[float] = []

        def publish_soon() -> None:
            time.sleep(0.2)
            times.append(time.monotonic())
            broker.publish([out(q, "wake")])

        thread = threading.Thread(target=publish_soon)
        thread.start()
        got = broker.fetch([q], 1, 5, "idle")
        woke = time.monotonic()
        thread.join()
        assert labels(got) == ["wake"]
        assert woke - times[0] < 0.02, "an idle consumer blocks on the list, it does not poll"

    def test_eta_messages_wait_in_a_sorted_set(self, broker, q, r):
        broker.publish([out(q, "later", eta=time.time() + 0.3)])
        assert r.zcard(f"{self.prefix}celeriac.schedule.{q}") == 1
        assert r.llen(self.prefix + q) == 0
        started = time.monotonic()
        assert labels(broker.fetch([q], 1, 3, "c")) == ["later"]
        assert 0.2 < time.monotonic() - started < 1.5

    def test_warns_when_redis_keeps_nothing_on_disk(self, broker, private_redis):
        warning = broker.persistence_warning()
        config = broker.conn.client.config_get("appendonly")
        if config.get("appendonly") == "yes" or broker.conn.client.config_get("save").get("save"):
            assert warning is None
        else:
            assert warning is not None and "appendonly yes" in warning
        durable = RedisBroker(private_redis.url)
        assert durable.persistence_warning() is None
        durable.close()

    def test_unknown_transport_option_names_the_known_ones(self):
        with pytest.raises(ConfigurationError, match="global_keyprefix"):
            RedisBroker(self.url, BrokerOptions(transport_options={"global_key_prefix": "x"}))
