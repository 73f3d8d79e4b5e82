"""The broker contract: every broker passes these tests; subclasses only supply ``make_broker``."""

from __future__ import annotations

import time
import uuid

import pytest

from celeriac.brokers.base import ACK, DEAD, Broker, BrokerOptions, Outgoing
from celeriac.protocol import TaskMessage, encode
from celeriac.protocol.entities import Queue


def envelope(label: str, task: str = "tests.noop"):
    return encode(TaskMessage(id=str(uuid.uuid4()), task=task, args=[label]))


def labels(deliveries) -> list[str]:
    return [d.envelope.headers["argsrepr"].strip("(),'") for d in deliveries]


def out(queue: str, label: str, **kw) -> Outgoing:
    return Outgoing(queue, envelope(label), **kw)


class BrokerContract:
    """Subclasses define ``make_broker(options)``; each test gets fresh queue names."""

    #: priority 0 runs before 9 (Celery on Redis) instead of 9 before 0 (RabbitMQ, SQLite)
    lower_priority_first = False
    #: messages of several queues come out in publish order, not queue by queue
    cross_queue_fifo = True
    #: messages waiting for their ETA count in their queue's ``scheduled`` and ``purge``
    #: drops them (RabbitMQ keeps them in separate delay queues)
    counts_scheduled = True
    #: queue arguments a queue needs for priorities (RabbitMQ: x-max-priority)
    priority_arguments: dict | None = None
    #: ``consumer_lost(count_unstarted=True)`` counts the delivery of what the consumer held
    #: (RabbitMQ returns a dead consumer's messages itself)

    def make_broker(self, options: BrokerOptions) -> Broker:
        raise NotImplementedError

    @pytest.fixture
    def broker(self):
        broker = self.make_broker(BrokerOptions(lease_seconds=30, delivery_limit=3))
        yield broker
        broker.close()

    @pytest.fixture
    def short_lease(self):
        broker = self.make_broker(BrokerOptions(lease_seconds=0.3, delivery_limit=2))
        yield broker
        broker.close()

    @pytest.fixture
    def q(self) -> str:
        return f"q-{uuid.uuid4().hex[:8]}"

    # -- order and bounds ----------------------------------------------------------------------

    def test_batch_publish_then_fetch_is_fifo_and_bounded(self, broker, q):
        broker.publish([out(q, str(i)) for i in range(10)])
        first = broker.fetch([q], 4, 0, "c1")
        assert labels(first) == ["0", "1", "2", "3"]
        second = broker.fetch([q], 100, 0, "c1")
        assert labels(second) == [str(i) for i in range(4, 10)]
        assert broker.fetch([q], 5, 0, "c1") == []

    def test_priority_order_then_fifo(self, broker, q):
        if self.priority_arguments is not None:
            broker.declare_queue(Queue(q, queue_arguments=self.priority_arguments))
        broker.publish([out(q, "p0-1"), out(q, "p5", priority=5), out(q, "p0-2")])
        got = labels(broker.fetch([q], 3, 0, "c"))
        if self.lower_priority_first:  # Celery's convention on Redis
            assert got == ["p0-1", "p0-2", "p5"]
        else:
            assert got == ["p5", "p0-1", "p0-2"]

    def test_fetch_from_several_queues_serves_each_in_order(self, broker, q):
        other = q + "-b"
        broker.publish([out(q, "a1"), out(other, "b1"), out(q, "a2"), out(other, "b2")])
        got = broker.fetch([q, other], 4, 0, "c")
        assert {d.queue for d in got} == {q, other}
        assert [x for x in labels(got) if x.startswith("a")] == ["a1", "a2"]
        assert [x for x in labels(got) if x.startswith("b")] == ["b1", "b2"]
        if self.cross_queue_fifo:
            assert labels(got) == ["a1", "b1", "a2", "b2"]

    def test_fetch_waits_for_a_message_published_later(self, broker, q):
        import threading

        timer = threading.Timer(0.1, lambda: broker.publish([out(q, "late")]))
        timer.start()
        started = time.monotonic()
        got = broker.fetch([q], 1, 5, "c")
        timer.join()
        assert labels(got) == ["late"]
        assert time.monotonic() - started < 2

    def test_fetch_with_nothing_returns_empty_after_timeout(self, broker, q):
        started = time.monotonic()
        assert broker.fetch([q], 1, 0.2, "c") == []
        assert 0.15 <= time.monotonic() - started < 2

    # -- settling ----------------------------------------------------------------------------

    def test_ack_removes(self, short_lease, q):
        short_lease.publish([out(q, "x")])
        got = short_lease.fetch([q], 1, 0, "c1")
        short_lease.ack(got)
        assert short_lease.queue_length(q).total == 0
        # after the lease would have run out, nothing comes back
        assert short_lease.fetch([q], 1, 0.5, "c2") == []

    def test_hand_back_keeps_place_and_does_not_count(self, broker, q):
        broker.publish([out(q, "first"), out(q, "second")])
        for _ in range(4):  # more hand-backs than delivery_limit=3: none of them counts
            got = broker.fetch([q], 2, 0, "c1")
            assert labels(got) == ["first", "second"]
            assert [d.deliveries for d in got] == [1, 1]
            broker.hand_back(got)
        assert broker.dead_letter_count(q) == 0
        assert broker.queue_length(q).ready == 2

    @pytest.fixture(params=[True, False], ids=["durable", "transient"])
    def requeued_q(self, request, broker, q) -> tuple[str, bool]:
        """A queue, durable or transient, and whether its messages are persistent."""
        if not request.param:
            broker.declare_queue(Queue(q, durable=False))
        return q, request.param

    def test_reject_requeue_is_a_counted_redelivery(self, broker, requeued_q):
        q, persistent = requeued_q
        broker.publish([out(q, "first", persistent=persistent), out(q, "second", persistent=persistent)])
        got = broker.fetch([q], 2, 0, "c1")
        broker.reject(got, requeue=True)  # their task ran and asked to run again
        again = broker.fetch([q], 2, 0, "c2")
        assert labels(again) == ["first", "second"]
        assert [d.deliveries for d in again] == [2, 2]  # the worker says redelivered
        broker.ack(again)
        assert broker.queue_length(q).total == 0
        assert broker.dead_letter_count(q) == 0

    def test_hand_back_after_a_requeue_keeps_the_count(self, broker, requeued_q):
        q, persistent = requeued_q
        broker.publish([out(q, "x", persistent=persistent)])
        broker.reject(broker.fetch([q], 1, 0, "c1"), requeue=True)
        (redelivered,) = broker.fetch([q], 1, 0, "c2")
        broker.hand_back([redelivered])  # a stopping child never started it
        (again,) = broker.fetch([q], 1, 0, "c3")
        assert again.deliveries == 2  # still a redelivery; not one more
        broker.ack([again])

    def test_reject_requeue_at_the_delivery_limit_dead_letters_with_the_reason(self, broker, requeued_q):
        q, persistent = requeued_q
        broker.publish([out(q, "loops", persistent=persistent)])
        for n in range(1, 4):  # delivery_limit=3
            (d,) = broker.fetch([q], 1, 0, f"c{n}")
            assert d.deliveries == n
            assert (broker.requeue_refusal(d) is None) == (n < 3)
            broker.reject([d], requeue=True)
        assert broker.fetch([q], 1, 0, "c4") == []
        assert broker.queue_length(q).total == 0
        (letter,) = broker.dead_letters(queue=q)
        assert "requeued 3 times" in letter.reason and "task_delivery_limit=3" in letter.reason
        assert letter.reason == broker.requeue_refusal(d)
        assert letter.deliveries == 3 and letter.envelope.body == d.envelope.body

    def test_reject_dead_letters_with_reason(self, broker, q):
        broker.publish([out(q, "bad"), out(q, "good")])
        bad, good = broker.fetch([q], 2, 0, "c")
        broker.reject([bad], requeue=False, reason="cannot decode body")
        broker.ack([good])
        assert broker.queue_length(q).total == 0
        dead = broker.dead_letters(queue=q)
        assert [(d.queue, d.reason) for d in dead] == [(q, "cannot decode body")]
        assert dead[0].envelope.body == bad.envelope.body
        assert broker.dead_letter_count(q) == 1

    def test_dead_letters_can_be_requeued_and_purged(self, broker, q):
        broker.publish([out(q, "a"), out(q, "b")])
        a, b = broker.fetch([q], 2, 0, "c")
        broker.reject([a, b], requeue=False, reason="unknown task")
        first = broker.dead_letters(queue=q)[0]
        assert broker.requeue_dead_letters([first.id]) == 1
        assert labels(broker.fetch([q], 5, 0, "c")) == ["a"]
        assert broker.purge_dead_letters() >= 1
        assert broker.dead_letter_count(q) == 0

    def test_reject_without_reason_is_refused(self, broker, q):
        broker.publish([out(q, "a")])
        got = broker.fetch([q], 1, 0, "c")
        with pytest.raises(ValueError):
            broker.reject(got, requeue=False)

    # -- leases --------------------------------------------------------------------------------

    def test_expired_lease_is_delivered_again(self, short_lease, q):
        short_lease.publish([out(q, "x")])
        first = short_lease.fetch([q], 1, 0, "dead-consumer")
        assert short_lease.fetch([q], 1, 0, "c2") == []
        again = short_lease.fetch([q], 1, 3, "c2")
        assert labels(again) == labels(first)
        assert again[0].deliveries == 2

    def test_extended_lease_is_not_delivered_again(self, short_lease, q):
        short_lease.publish([out(q, "x")])
        short_lease.fetch([q], 1, 0, "alive")
        for _ in range(3):
            assert short_lease.fetch([q], 1, 0.15, "other") == []
            assert short_lease.extend_leases(["alive"]) == 1
        # 0.45 s have passed, longer than the 0.3 s lease: only the renewals kept it
        assert short_lease.queue_length(q).reserved == 1

    def test_poison_message_goes_to_dead_letters_after_delivery_limit(self, short_lease, q):
        short_lease.publish([out(q, "poison")])
        assert short_lease.fetch([q], 1, 0, "c1")
        assert short_lease.fetch([q], 1, 3, "c2")  # lease of c1 expired: 2nd delivery
        assert short_lease.fetched_dead_letters() == []
        assert short_lease.fetch([q], 1, 3, "c3") == []  # 3rd would pass the limit of 2
        dead = short_lease.dead_letters(queue=q)
        assert len(dead) == 1 and "2 times" in dead[0].reason
        # the fetch reports it, once, so the worker logs it and stores FAILURE for its result
        (reported,) = short_lease.fetched_dead_letters()
        assert (reported.queue, reported.reason) == (q, dead[0].reason)
        assert reported.deliveries == dead[0].deliveries
        assert reported.envelope.headers["id"] == dead[0].envelope.headers["id"]
        assert short_lease.fetched_dead_letters() == []

    def test_consumer_lost_releases_at_once(self, broker, q):
        broker.publish([out(q, str(i)) for i in range(3)])
        running, *_unstarted = broker.fetch([q], 3, 0, "child-1")
        assert broker.consumer_lost("child-1", [running.tag], "killed by SIGKILL") == []
        again = broker.fetch([q], 3, 0, "child-2")
        assert labels(again) == ["0", "1", "2"]
        assert [d.deliveries for d in again] == [2, 1, 1]

    def test_consumer_lost_dead_letters_running_message_at_limit(self, broker, q):
        broker.publish([out(q, "crasher")])
        for attempt in range(1, 4):
            (d,) = broker.fetch([q], 1, 0, f"child-{attempt}")
            dead = broker.consumer_lost(f"child-{attempt}", [d.tag], "killed by SIGKILL")
        assert dead == [d.tag]
        assert broker.queue_length(q).total == 0
        (letter,) = broker.dead_letters(queue=q)
        assert "killed by SIGKILL" in letter.reason and letter.deliveries == 3

    def test_consumer_lost_before_any_task_counts_what_it_held_up_to_the_dead_letters(self, broker, q):
        broker.publish([out(q, "kills-at-fetch")])
        for attempt in range(1, 4):  # delivery_limit=3
            (d,) = broker.fetch([q], 1, 0, f"child-{attempt}")
            assert d.deliveries == attempt
            assert broker.consumer_lost(f"child-{attempt}", [], "crashed", count_unstarted=True) == []
        assert broker.fetch([q], 1, 0, "child-4") == []
        (letter,) = broker.dead_letters(queue=q)
        assert "3 times" in letter.reason

    # -- scheduling and durability -------------------------------------------------------------

    def test_eta_message_is_invisible_until_due(self, broker, q):
        due = time.time() + 0.4
        broker.publish([out(q, "later", eta=due), out(q, "now")])
        assert labels(broker.fetch([q], 5, 0, "c")) == ["now"]
        length = broker.queue_length(q)
        assert (length.scheduled, length.reserved) == (int(self.counts_scheduled), 1)
        got = broker.fetch([q], 5, 3, "c")
        assert labels(got) == ["later"]
        assert time.time() >= due

    def test_transient_messages_are_delivered_like_persistent_ones(self, broker, q):
        broker.declare_queue(Queue(q, durable=False))
        broker.publish([out(q, "t", persistent=False), out(q, "p")])
        got = broker.fetch([q], 2, 0, "c")
        assert sorted(labels(got)) == ["p", "t"]
        broker.ack(got)
        assert broker.queue_length(q).total == 0

    def test_queue_length_counts_each_state(self, broker, q):
        broker.publish([out(q, "a"), out(q, "b"), out(q, "c", eta=time.time() + 60)])
        broker.fetch([q], 1, 0, "c")
        length = broker.queue_length(q)
        scheduled = int(self.counts_scheduled)
        assert (length.ready, length.scheduled, length.reserved, length.total) == (
            1,
            scheduled,
            1,
            2 + scheduled,
        )

    #: the broker reports how long the oldest ready message has waited
    reports_oldest_age = False

    def test_queue_lengths_measures_several_queues_in_the_order_asked(self, broker, q):
        other, empty = q + "-other", q + "-empty"
        broker.publish([out(q, "a"), out(q, "b"), out(other, "c")])
        broker.fetch([other], 1, 0, "c")
        lengths = broker.queue_lengths([other, empty, q])
        assert [(n.queue, n.ready, n.reserved) for n in lengths] == [(other, 0, 1), (empty, 0, 0), (q, 2, 0)]
        singles = [broker.queue_length(name) for name in (other, empty, q)]
        assert [(n.ready, n.scheduled, n.reserved, n.running) for n in lengths] == [
            (n.ready, n.scheduled, n.reserved, n.running) for n in singles
        ]
        if self.reports_oldest_age:
            assert lengths[0].oldest_age is None and lengths[1].oldest_age is None
            assert 0 <= lengths[2].oldest_age < 30

    def test_purge_drops_waiting_messages_not_leased_ones(self, broker, q):
        broker.publish([out(q, "a"), out(q, "b"), out(q, "c", eta=time.time() + 60)])
        broker.fetch([q], 1, 0, "c")
        assert broker.purge(q) == 1 + int(self.counts_scheduled)
        assert broker.queue_length(q).reserved == 1

    def test_queue_names_lists_declared_and_used_queues(self, broker, q):
        broker.declare_queue(Queue(q + "-declared"))
        broker.publish([out(q, "a")])
        names = broker.queue_names()
        assert q in names and q + "-declared" in names

    def test_node_stats_expire(self, broker):
        node = f"node-{uuid.uuid4().hex[:6]}"
        broker.put_node_stats(node, b'{"ok": 1}', ttl=60)
        assert [s.payload for s in broker.node_stats() if s.node == node] == [b'{"ok": 1}']
        broker.put_node_stats(node, b"{}", ttl=-1)
        assert [s for s in broker.node_stats() if s.node == node] == []

    def test_consumer_lost_can_ack_or_dead_letter_the_running_message(self, broker, q):
        broker.publish([out(q, "timed-out"), out(q, "rejected"), out(q, "waiting")])
        first, _second, _third = broker.fetch([q], 3, 0, "child-1")
        broker.consumer_lost("child-1", [first.tag], "hard time limit", running_to=ACK)
        (again,) = broker.fetch([q], 1, 0, "child-2")
        assert labels([again]) == ["rejected"]
        assert broker.consumer_lost(
            "child-2", [again.tag], "hard time limit (dead-lettered)", running_to=DEAD
        ) == [again.tag]
        assert labels(broker.fetch([q], 5, 0, "child-3")) == ["waiting"]
        assert [d.reason for d in broker.dead_letters(queue=q)] == ["hard time limit (dead-lettered)"]

    def test_fetch_acks_the_settled_window_in_the_same_round_trip(self, broker, q):
        broker.publish([out(q, str(i)) for i in range(3)])
        first = broker.fetch([q], 2, 0, "c")
        second = broker.fetch([q], 2, 0, "c", ack=first)
        assert labels(second) == ["2"]
        assert broker.queue_length(q).total == 1
        assert broker.fetch([q], 2, 0, "c", ack=second) == []
        assert broker.queue_length(q).total == 0

    # -- early ack -----------------------------------------------------------------------------

    def test_started_message_is_never_delivered_again_and_counts_as_running(self, short_lease, q):
        short_lease.publish([out(q, "once"), out(q, "waiting")])
        started, _waiting = short_lease.fetch([q], 2, 0, "c1")
        short_lease.mark_started([started])
        length = short_lease.queue_length(q)
        assert (length.running, length.reserved) == (1, 1)
        again = short_lease.fetch([q], 2, 3, "c2")  # c1's leases run out
        assert labels(again) == ["waiting"]
        short_lease.ack([started, *again])
        assert short_lease.queue_length(q).total == 0

    def test_mark_started_marks_a_message_whose_lease_is_held(self, broker, q):
        broker.publish([out(q, "mine")])
        (delivery,) = broker.fetch([q], 1, 0, "c1")
        assert broker.mark_started([delivery]) == []
        assert broker.queue_length(q).running == 1
        assert broker.fetch([q], 1, 0, "c2") == []
        broker.ack([delivery])
        assert broker.queue_length(q).total == 0

    def test_mark_started_reports_a_lease_another_consumer_took_over(self, short_lease, q):
        # a node stalled past its lease (a paused container): when it wakes, the message it
        # prefetched was taken over by another node, which alone may run it
        short_lease.publish([out(q, "once")])
        (stalled,) = short_lease.fetch([q], 1, 0, "stalled-node/1")
        (taken,) = short_lease.fetch([q], 1, 3, "live-node/1")  # waits for the lease to run out
        assert short_lease.mark_started([taken]) == []
        assert labels([taken]) == labels([stalled])
        assert short_lease.mark_started([stalled]) == [stalled]
        length = short_lease.queue_length(q)
        assert (length.running, length.reserved) == (1, 0)
        short_lease.ack([taken])
        assert short_lease.queue_length(q).total == 0
        assert short_lease.dead_letter_count(q) == 0

    def test_started_message_of_a_dead_node_goes_to_dead_letters(self, short_lease, q):
        short_lease.publish([out(q, "lost with its node")])
        (started,) = short_lease.fetch([q], 1, 0, "dead-node/1")
        short_lease.mark_started([started])
        assert short_lease.recover_lost("node died") == []  # the lease still runs
        assert short_lease.fetch([q], 1, 0.5, "c2") == []
        (letter,) = short_lease.recover_lost("node died")
        assert letter.reason == "node died" and letter.envelope.body == started.envelope.body
        assert short_lease.dead_letter_count(q) == 1
        assert short_lease.queue_length(q).total == 0

    def test_consumer_lost_removes_started_messages_that_finished(self, broker, q):
        broker.publish([out(q, str(i)) for i in range(3)])
        done, running, _unstarted = broker.fetch([q], 3, 0, "child-1")
        broker.mark_started([done])
        broker.mark_started([running])
        broker.consumer_lost("child-1", [running.tag], "killed", running_to=ACK)
        assert labels(broker.fetch([q], 3, 0, "child-2")) == ["2"]
        assert broker.queue_length(q).total == 1
