"""Service rates on the workers' counting time (:mod:`celeriac.observe.rates`): a slot's rate is its
count's change over the change of the time the count was true for, whenever the monitor reads it."""

from __future__ import annotations

import pytest

from celeriac.observe.rates import AlignedRates, Rate
from celeriac.observe.records import SlotCounts, WorkerStats


def node(
    *slots: SlotCounts, name: str = "w1", pid: int = 1, started_at: float = 1.0, queues=("celery",)
) -> WorkerStats:
    return WorkerStats(name, pid, started_at, 0.0, list(queues), len(slots), "4", 30_000, counted=list(slots))


def count(at: float, n: int, index: int = 0, queue: str = "celery") -> SlotCounts:
    return SlotCounts(index, at, {queue: n})


def test_a_slots_rate_is_its_counts_change_over_their_time_not_the_time_of_the_updates():
    rates = AlignedRates(keep_s=60)
    assert rates.rate("celery", 5) is None  # nothing known
    rates.update([node(count(100.0, 0))])
    assert rates.rate("celery", 5) is None  # one count: no rate yet
    rates.update([node(count(100.0, 0))])  # the same heartbeat again: no news
    assert rates.rate("celery", 5) is None
    rates.update([node(count(102.5, 50))])  # counted 2.5 s later, whenever it is read
    assert rates.rate("celery", 5) == Rate(20.0, 2.5)
    for _ in range(3):  # read again and again before the next heartbeat: the rate stays
        rates.update([node(count(102.5, 50))])
        assert rates.rate("celery", 5) == Rate(20.0, 2.5)
    rates.update([node(count(103.0, 60))])  # a count half a second later
    assert rates.rate("celery", 0.5) == Rate(20.0, 0.5)
    assert rates.rate("celery", 3) == Rate(20.0, 3.0)


def test_slots_of_every_node_consuming_the_queue_add_up_and_others_do_not_count():
    rates = AlignedRates(keep_s=60)
    rates.update(
        [
            node(count(10.0, 0, index=0), count(10.2, 0, index=1)),
            node(count(10.5, 0), name="w2", pid=2),
            # counts runs of celery, but does not consume it (a consumer cancelled)
            node(count(10.0, 0), name="other", pid=3, queues=["reports"]),
        ]
    )
    assert rates.rate("celery", 2) is None
    rates.update(
        [
            node(count(12.0, 20, index=0), count(12.2, 40, index=1)),
            node(count(11.5, 5), name="w2", pid=2),
            node(count(12.0, 1000), name="other", pid=3, queues=["reports"]),
        ]
    )
    # 10/s + 20/s on w1, 5/s on w2; the longest span any slot gave
    assert rates.rate("celery", 2) == Rate(35.0, 2.0)
    assert rates.rate("reports", 2) == Rate(0.0, 2.0)  # "other" consumes reports, and ran none of it
    assert rates.rate("thumbs", 2) is None  # nobody has counts for it


def test_a_queue_without_counts_is_unknown_until_a_slot_has_two():
    rates = AlignedRates(keep_s=60)
    rates.update([node(count(10.0, 0), queues=["celery", "thumbs"])])
    assert rates.rate("thumbs", 1) is None
    rates.update([node(count(11.0, 7), queues=["celery", "thumbs"])])
    # consumed, and none finished: a rate of zero, not unknown
    assert rates.rate("thumbs", 1) == Rate(0.0, 1.0)
    assert rates.rate("celery", 1) == Rate(7.0, 1.0)


def test_a_span_starts_at_the_latest_count_at_least_that_long_before_the_last():
    rates = AlignedRates(keep_s=60)
    finished = 0
    for i in range(11):  # a count every 2 s, 0..20 s; 3 runs a second, then 1 from 14 s on
        rates.update([node(count(2.0 * i, finished))])
        finished += 6 if 2.0 * i < 14 else 2
    # span 5: from 14 s (the latest count at least 5 s before 20 s) to 20 s
    assert rates.rate("celery", 5) == Rate(pytest.approx(1.0), 6.0)
    # span 1: the last two counts
    assert rates.rate("celery", 1) == Rate(pytest.approx(1.0), 2.0)
    # span 10: from 10 s, so over the change of rate
    assert rates.rate("celery", 10) == Rate(pytest.approx((6 * 2 + 2 * 3) / 10), 10.0)
    # a span longer than the counts: over all of them
    assert rates.rate("celery", 50) == Rate(pytest.approx((6 * 7 + 2 * 3) / 20), 20.0)


def test_an_idle_slot_falls_to_zero():
    rates = AlignedRates(keep_s=60)
    rates.update([node(count(0.0, 0))])
    rates.update([node(count(1.0, 30))])
    assert rates.rate("celery", 1).per_s == 30
    seen = []
    for t in (2.0, 3.0, 4.0):  # the child reports once a second, nothing ran
        rates.update([node(count(t, 30))])
        seen.append((rates.rate("celery", 1).per_s, rates.rate("celery", 2).per_s))
    assert seen == [(0.0, 15.0), (0.0, 0.0), (0.0, 0.0)]


def test_a_node_that_vanishes_is_forgotten_and_a_restarted_node_starts_a_new_series():
    rates = AlignedRates(keep_s=60)
    for t, n in ((0.0, 0), (1.0, 10)):
        rates.update([node(count(t, n)), node(count(t, 5 * n), name="w2", pid=2)])
    assert rates.rate("celery", 1).per_s == 10 + 50
    rates.update([node(count(2.0, 20))])  # w2 is gone (stopped, or its heartbeat expired)
    assert rates.rate("celery", 1).per_s == 10
    rates.update([node(count(2.0, 20)), node(count(3.0, 900), name="w2", pid=2)])
    assert rates.rate("celery", 1).per_s == 10, "w2 came back: its old counts are not its rate"
    # w1 restarts (new pid and start time) and counts from zero: no rate until its second count,
    # and the count going down is not read against the old series
    rates.update([node(count(3.0, 0), pid=7, started_at=3.0)])
    assert rates.rate("celery", 1) is None
    rates.update([node(count(4.0, 4), pid=7, started_at=3.0)])
    assert rates.rate("celery", 1) == Rate(4.0, 1.0)


def test_a_node_that_stops_consuming_a_queue_no_longer_counts_for_it():
    rates = AlignedRates(keep_s=60)
    rates.update([node(SlotCounts(0, 0.0, {"celery": 0, "thumbs": 0}), queues=["celery", "thumbs"])])
    rates.update([node(SlotCounts(0, 1.0, {"celery": 5, "thumbs": 8}), queues=["celery", "thumbs"])])
    assert rates.rate("thumbs", 1) == Rate(8.0, 1.0)
    rates.update([node(SlotCounts(0, 2.0, {"celery": 10, "thumbs": 8}), queues=["celery"])])
    assert rates.rate("thumbs", 1) is None
    assert rates.rate("celery", 1) == Rate(5.0, 1.0)


def test_counts_older_than_keep_s_are_dropped():
    rates = AlignedRates(keep_s=5)
    for i in range(500):  # a count every 2 s, 20 runs a second
        rates.update([node(count(2.0 * i, 40 * i))])
    # what is kept reaches back keep_s, and one count more (so a span of keep_s is available)
    longest = rates.rate("celery", 10_000)
    assert 5 <= longest.span_s <= 5 + 2
    assert longest.per_s == 20
    assert rates.rate("celery", 5) == longest


def test_a_queue_a_node_consumes_without_publishing_counts_has_no_aligned_rate():
    """An older worker beside a newer one (a rolling upgrade): the newer one's counts are not all the
    queue's runs, so the monitor goes by the counters, which have every worker's."""
    rates = AlignedRates(keep_s=60)
    older = WorkerStats("old", 2, 1.0, 0.0, ["celery", "reports"], 1, "4", 30_000)
    for t in (0.0, 1.0):
        rates.update([node(count(t, 10 * int(t)), queues=["celery", "thumbs"]), older])
    assert rates.rate("celery", 1) is None
    assert rates.rate("thumbs", 1) == Rate(0.0, 1.0)  # the older node does not consume it
    rates.update([node(count(2.0, 20), queues=["celery", "thumbs"])])  # the older node stopped
    assert rates.rate("celery", 1) == Rate(10.0, 1.0)
