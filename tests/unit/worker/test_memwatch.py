"""The master's memory bookkeeping: verdicts per task, the master's trend, what recycling costs."""

from __future__ import annotations

import os
import random

import psutil
import pytest

from celeriac.observe.records import ExitReason, Verdict
from celeriac.worker.memory import WARMUP_RUNS, TaskTally
from celeriac.worker.memwatch import (
    HIGH_WATER_MIN_KIB,
    LEAK_MIN_KIB,
    REPORTED_TASKS,
    Life,
    MemoryWatch,
    StartCost,
    TaskBook,
    Trend,
    theil_sen,
    verdict,
)


def tally_rows(runs: list[tuple[int, int]], name: str = "t") -> dict:
    """A child's report for runs given as (rss kept, peak raised) in KiB."""
    tally = TaskTally()
    rss = 100_000
    for kept, raised in runs:
        tally.add(name, 0.001, kept, raised)
        rss += kept
    return tally.flush()


def judged(runs: list[tuple[int, int]]) -> Verdict:
    return verdict(tally_rows(runs)["t"])[0]


# -- verdicts -------------------------------------------------------------------------------


def test_steady_growth_after_warm_up_is_a_leak():
    assert judged([(1024, 0)] * 12) is Verdict.LEAK


def test_small_leak_that_grows_a_page_now_and_then_is_a_leak_once_it_adds_up():
    runs = [(4, 0) if i % 10 == 0 else (0, 0) for i in range(20_000)]
    assert judged(runs) is Verdict.LEAK
    assert judged(runs[:1000]) is Verdict.FLAT, "400 KiB is not enough to call it"


def test_one_big_run_then_flat_is_a_high_water_mark():
    assert judged([(50_000, 50_000)] + [(0, 0)] * 20) is Verdict.HIGH_WATER


def test_a_spike_that_is_given_back_is_a_high_water_mark():
    assert judged([(0, 65_536)] + [(0, 0)] * 20) is Verdict.HIGH_WATER


def test_one_jump_after_warm_up_is_not_a_leak():
    runs = [(0, 0)] * 5 + [(LEAK_MIN_KIB * 2, LEAK_MIN_KIB * 2)] + [(4, 0)] * 3 + [(0, 0)] * 10
    assert judged(runs) is Verdict.HIGH_WATER


def test_growth_that_is_given_back_is_not_a_leak():
    runs = [(8192, 8192), (-8192, 0)] * 20
    assert judged(runs) is Verdict.HIGH_WATER


def test_nothing_happening_is_flat():
    assert judged([(0, 0)] * 50) is Verdict.FLAT


def test_too_few_runs_per_child_cannot_tell_a_leak_from_a_high_water_mark():
    book = TaskBook()
    for _ in range(10):  # ten children, each recycled after one run that kept 64 MiB
        book.merge(tally_rows([(65_536, 65_536)]))
    (task,) = book.report()
    assert task.verdict is Verdict.TOO_FEW_RUNS
    assert f"more than {WARMUP_RUNS + 3} times" in task.why
    assert judged([(10, 0)] * 2) is Verdict.FLAT, "nothing to tell about"


# -- the book -------------------------------------------------------------------------------


def test_book_adds_up_children_and_lists_leaks_first():
    book = TaskBook()
    book.merge(tally_rows([(0, 0)] * 30, "quiet"))
    book.merge(tally_rows([(HIGH_WATER_MIN_KIB * 8, HIGH_WATER_MIN_KIB * 8)] + [(0, 0)] * 9, "report"))
    for _ in range(2):  # two children leak the same way
        book.merge(tally_rows([(512, 0)] * 12, "leaky"))
    book.recycled_after("leaky")
    book.killed_during("report")
    tasks = book.report()
    assert [t.name for t in tasks] == ["leaky", "report", "quiet"]
    leaky = tasks[0]
    assert (leaky.runs, leaky.late_runs, leaky.late_growth_kib) == (24, 20, 10_240)
    assert leaky.growth_mean_kib == 512
    assert leaky.recycles == 1
    assert tasks[1].hard_kills == 1
    assert "1.0 MiB" not in leaky.why and "10.0 MiB after warm-up" in leaky.why


def test_book_ignores_malformed_rows_from_a_child():
    book = TaskBook()
    book.merge({"ok": tally_rows([(0, 0)])["t"], "short": [1, 2], 3: [0] * 10})  # type: ignore[dict-item]
    assert [t.name for t in book.report()] == ["ok"]


# -- the master's trend ---------------------------------------------------------------------


def series(trend: Trend, values, every: float = 10.0, start: float = 0.0) -> None:
    for i, value in enumerate(values):
        trend.add(start + i * every, value)


def test_theil_sen_ignores_outliers():
    points = [(float(x), 2.0 * x) for x in range(20)]
    points[5] = (5.0, 1000.0)
    assert theil_sen(points) == pytest.approx(2.0)
    assert theil_sen([(1.0, 5.0)]) == 0.0


def test_steady_growth_of_the_master_is_seen_after_a_full_window():
    trend = Trend(warmup_s=60, window_s=900, points=90)
    series(trend, [30_000 + 20 * i for i in range(60)])  # 20 KiB every 10 s for 10 minutes
    assert not trend.growing(), "not a full window yet"
    assert trend.per_hour() == pytest.approx(7200, rel=0.01)
    series(trend, [31_200 + 20 * i for i in range(60)], start=600)
    assert trend.growing()


def test_growth_too_slow_to_add_up_to_a_mebibyte_in_the_window_is_not_flagged():
    trend = Trend(warmup_s=60, window_s=900, points=90)
    series(trend, [30_000 + 2 * i for i in range(120)])
    assert not trend.growing()
    assert trend.per_hour() == pytest.approx(720, rel=0.01), "but the rate is published"


def test_one_step_up_of_the_master_is_not_growth():
    trend = Trend(warmup_s=60, window_s=900, points=90)
    series(trend, [30_000] * 50 + [34_000] * 100)
    assert not trend.growing()


def test_a_flat_master_with_noise_is_not_growing():
    rng = random.Random(7)
    trend = Trend(warmup_s=60, window_s=900, points=90)
    series(trend, [30_000 + rng.choice((0, 0, 4, -4, 8)) for _ in range(200)])
    assert not trend.growing()
    assert abs(trend.per_hour() or 0.0) < 100


def test_the_first_minute_is_not_counted():
    trend = Trend(warmup_s=60, window_s=900, points=90)
    series(trend, [10_000, 20_000, 30_000, 30_000, 31_000], every=20)
    assert [kib for _, kib in trend.samples] == [30_000, 31_000]


# -- what recycling costs -------------------------------------------------------------------


def test_slow_starts_with_one_task_per_child_warn_once_with_the_numbers_and_a_value():
    cost = StartCost()
    for _ in range(3):
        cost.started(1.0)
        cost.recycled(Life(start_s=1.0, busy_s=0.01, tasks=1, reason=ExitReason.MAX_TASKS))
    message = cost.warning(max_tasks=1, max_memory=None)
    assert message is not None
    assert "recycling costs 99% of child capacity" in message
    assert "takes 1.00 s to be ready" in message
    assert "at most 59 tasks a minute" in message
    assert "worker_max_tasks_per_child to at least 900 (now 1)" in message
    assert cost.warning(max_tasks=1, max_memory=None) is None, "once"


def test_cheap_recycling_does_not_warn():
    cost = StartCost()
    for _ in range(5):
        cost.recycled(Life(start_s=0.05, busy_s=10.0, tasks=1000, reason=ExitReason.MAX_TASKS))
    assert cost.cost() == pytest.approx(0.05 / 10.05)
    assert cost.warning(1000, None) is None


def test_recycling_for_memory_points_at_the_memory_limit_and_the_report():
    cost = StartCost()
    for _ in range(4):
        cost.recycled(Life(start_s=0.5, busy_s=0.5, tasks=2, reason=ExitReason.MAX_MEMORY))
    message = cost.warning(max_tasks=None, max_memory=200_000)
    assert message is not None
    assert "worker_max_memory_per_child=200000 KiB" in message
    assert "celeriac inspect memory" in message


# -- sampling -------------------------------------------------------------------------------


def test_watch_samples_the_master_and_children_and_keeps_their_peak():
    watch = MemoryWatch(1.0, None, None, None)
    me = psutil.Process(os.getpid())
    assert watch.sample(0.0, [(os.getpid(), me), (999_999_999, None)]) is None
    sample = watch.children[os.getpid()]
    assert sample.rss_kib and sample.uss_kib and sample.peak_rss_kib == sample.rss_kib
    assert watch.master_uss_kib and watch.master_uss_kib > 0
    watch.sample(1.0, [])
    assert watch.children == {}, "gone children are forgotten"


def test_hard_limit_is_checked_on_own_memory():
    me = psutil.Process(os.getpid())
    assert MemoryWatch(1.0, None, None, None).over_hard_limit(me) is None, "no limit"
    assert MemoryWatch(1.0, None, None, 10**9).over_hard_limit(me) is None
    uss = MemoryWatch(1.0, None, None, 1).over_hard_limit(me)
    assert uss is not None and uss > 1


def test_due_once_per_interval():
    watch = MemoryWatch(1.0, None, None, None)
    assert [watch.due(t) for t in (0.0, 0.5, 1.0, 1.2, 2.1)] == [True, False, True, False, True]


def test_report_carries_limits_starts_and_tasks():
    watch = MemoryWatch(1.0, 100, 200_000, 400_000)
    watch.starts.started(0.2)
    watch.starts.started(0.4)
    watch.book.merge(tally_rows([(0, 0)] * 3))
    report = watch.report()
    assert (report.max_tasks_per_child, report.max_memory_per_child_kib) == (100, 200_000)
    assert report.max_memory_per_child_hard_kib == 400_000
    assert (report.starts, report.start_max_s) == (2, 0.4)
    assert report.start_median_s == pytest.approx(0.3)
    assert [t.name for t in report.tasks] == ["t"]
    assert report.master_trend_kib_per_hour is None


def test_report_keeps_the_heartbeat_small_with_many_task_names():
    watch = MemoryWatch(1.0, None, None, None)
    for i in range(REPORTED_TASKS + 30):
        watch.book.merge(tally_rows([(0, 0)] * 3, f"quiet{i:03d}"))
    watch.book.merge(tally_rows([(1024, 0)] * 12, "zz.leaky"))
    report = watch.report()
    assert len(report.tasks) == REPORTED_TASKS
    assert report.tasks_omitted == 31
    assert report.tasks[0].name == "zz.leaky", "what matters is kept"


def test_a_sampled_fast_leak_is_scaled_up_to_every_run():
    tally = TaskTally()
    for _ in range(400):  # a fast task that keeps 64 KiB a run
        measure = tally.measure("fast")
        tally.add("fast", 0.0001, 64 if measure else None)
    (task,) = book_of(tally).report()
    assert task.measured_runs < task.runs / 4
    assert task.verdict is Verdict.LEAK
    assert task.late_growth_kib == pytest.approx(64 * (400 - WARMUP_RUNS), rel=0.01)
    assert "measured runs" in task.why


def book_of(tally: TaskTally) -> TaskBook:
    book = TaskBook()
    book.merge(tally.flush())
    return book
