"""The prefetch window: fixed, 0 (unlimited, capped) and auto (sized from measured task time)."""

from __future__ import annotations

import pytest

from celeriac.worker.prefetch import AUTO_MAX, AUTO_START, MAX_WAIT_S, UNLIMITED_CAP, PrefetchWindow


@pytest.mark.parametrize("multiplier", [1, 4, 17])
def test_fixed_window_is_the_multiplier(multiplier):
    window = PrefetchWindow(multiplier)
    assert window.size == multiplier
    assert window.describe() == str(multiplier)


def test_fixed_window_ignores_measurements():
    window = PrefetchWindow(4)
    window.observe(fetch_s=0.01, tasks=4, run_s=40.0)
    assert window.size == 4


def test_zero_means_unlimited_with_a_cap_per_fetch():
    window = PrefetchWindow(0)
    assert window.size == UNLIMITED_CAP
    assert 0 < UNLIMITED_CAP <= 10_000
    assert window.describe() == "unlimited"


def test_auto_starts_small_before_anything_is_measured():
    window = PrefetchWindow("auto")
    assert window.size == AUTO_START
    assert window.describe() == f"auto (now {AUTO_START})"


def feed(window: PrefetchWindow, fetch_s: float, task_s: float, batches: int = 30) -> None:
    for _ in range(batches):
        tasks = window.size
        window.observe(fetch_s, tasks, task_s * tasks)


def test_auto_gives_long_tasks_a_window_of_one():
    window = PrefetchWindow("auto")
    feed(window, fetch_s=0.002, task_s=2.0)
    assert window.size == 1


def test_auto_gives_microsecond_tasks_a_large_bounded_window():
    window = PrefetchWindow("auto")
    feed(window, fetch_s=0.001, task_s=0.000_002)
    assert window.size > 100
    assert window.size <= AUTO_MAX


@pytest.mark.parametrize(
    ("fetch_s", "task_s"), [(0.001, 0.001), (0.0005, 0.0002), (0.002, 0.01), (0.005, 0.002)]
)
def test_auto_window_keeps_fetch_overhead_low_and_waiting_short(fetch_s, task_s):
    window = PrefetchWindow("auto")
    feed(window, fetch_s, task_s)
    size = window.size
    # the last prefetched message never waits much more than MAX_WAIT_S behind the others
    assert (size - 1) * task_s <= MAX_WAIT_S + 1e-9
    # and the window is the smallest one that keeps fetching under 5 % of the time (or at the wait bound)
    fetch_share = fetch_s / (size * task_s)
    at_wait_bound = size * task_s > MAX_WAIT_S
    assert fetch_share <= 0.05 + 1e-9 or at_wait_bound or size == AUTO_MAX
    if size > 1:
        assert fetch_s / ((size - 1) * task_s) >= 0.05 - 1e-9


def test_auto_window_grows_when_tasks_get_faster_and_shrinks_when_slower():
    window = PrefetchWindow("auto")
    feed(window, fetch_s=0.001, task_s=0.0001)
    fast = window.size
    feed(window, fetch_s=0.001, task_s=0.5)
    assert window.size < fast
    assert window.size == 1


def test_auto_ignores_empty_batches():
    window = PrefetchWindow("auto")
    window.observe(fetch_s=1.0, tasks=0, run_s=0.0)
    assert window.size == AUTO_START
    assert window.mean_task_s is None
