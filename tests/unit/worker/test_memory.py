"""MemoryProbe: the process's own memory, cheap enough to read after every task."""

from __future__ import annotations

import mmap

import psutil
import pytest

from celeriac.worker.memory import (
    ALWAYS_MEASURED,
    GROWTH,
    GROWTH_MAX,
    LATE_GROWTH,
    LATE_GROWTH_MAX,
    LATE_MEASURED,
    LATE_RUNS,
    LATE_STEPS,
    MEASURED,
    PEAK_RAISE_MAX,
    RUNS,
    RUNTIME,
    RUNTIME_MAX,
    SAMPLE_EVERY,
    SLOW_S,
    WARMUP_RUNS,
    MemoryProbe,
    TaskTally,
    empty_row,
    merge_row,
)


def test_rss_is_close_to_what_psutil_reports():
    probe = MemoryProbe()
    ours = probe.rss_kib()
    theirs = psutil.Process().memory_info().rss // 1024
    assert ours > 0
    assert abs(ours - theirs) <= max(4096, theirs // 10)


def test_uss_is_positive_and_not_above_rss():
    probe = MemoryProbe()
    uss = probe.uss_kib()
    assert 0 < uss <= probe.rss_kib() + 1024


def test_over_is_none_below_the_limit_and_the_uss_above_it():
    probe = MemoryProbe()
    assert probe.over(10**9) is None  # a TiB
    uss = probe.over(1)
    assert uss is not None and uss > 1


def test_rss_grows_with_allocated_memory():
    probe = MemoryProbe()
    # fresh pages from the kernel: a malloc'd block could reuse heap the test process already
    # holds resident (glibc raises its mmap threshold after big frees)
    size = 32 * 1024 * 1024
    block = mmap.mmap(-1, size)
    before = probe.rss_kib()
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    after = probe.rss_kib()
    block.close()
    assert after - before >= 24 * 1024


def test_peak_is_a_high_water_mark_that_stays_up_after_memory_is_freed():
    probe = MemoryProbe()
    before = probe.peak_kib()
    headroom = before - probe.rss_kib()  # how far this process has been above where it is now
    block = bytearray(b"\x01") * ((headroom + 48 * 1024) * 1024)
    raised = probe.peak_kib()
    del block
    assert raised - before >= 40 * 1024
    assert probe.peak_kib() >= raised > probe.rss_kib()


# -- the child's tally ----------------------------------------------------------------------


def test_tally_counts_runs_time_and_growth_per_task_name():
    tally = TaskTally()
    tally.add("a", 0.010, 100, 0)
    tally.add("a", 0.030, -50, 500)
    tally.add("b", 0.001, 0, 0)
    rows = tally.flush()
    a = rows["a"]
    assert (a[RUNS], a[MEASURED]) == (2, 2)
    assert a[RUNTIME] == pytest.approx(0.040)
    assert a[RUNTIME_MAX] == pytest.approx(0.030)
    assert (a[GROWTH], a[GROWTH_MAX], a[PEAK_RAISE_MAX]) == (50, 100, 500)
    assert rows["b"][RUNS] == 1
    assert tally.busy_s == pytest.approx(0.041)
    assert tally.flush() == {}, "a flush forgets what it returned"


def test_tally_leaves_each_tasks_first_runs_out_of_the_late_growth():
    tally = TaskTally()
    for _ in range(WARMUP_RUNS + 3):
        tally.add("a", 0.0, 700)
    first = tally.flush()["a"]
    assert (first[LATE_RUNS], first[LATE_GROWTH], first[LATE_STEPS], first[LATE_GROWTH_MAX]) == (
        3,
        2100,
        3,
        700,
    )
    tally.add("a", 0.0, 0)  # the warm-up is per child life, not per report
    assert tally.flush()["a"][LATE_RUNS] == 1


def test_fast_tasks_are_measured_on_every_run_at_first_then_on_a_sample():
    tally = TaskTally()
    measured = []
    for _ in range(ALWAYS_MEASURED + 10 * SAMPLE_EVERY):
        measure = tally.measure("fast")
        measured.append(measure)
        tally.add("fast", 0.0001, 0 if measure else None)
    assert all(measured[:ALWAYS_MEASURED])
    assert sum(measured[ALWAYS_MEASURED:]) == 10
    row = tally.flush()["fast"]
    assert (row[RUNS], row[MEASURED]) == (ALWAYS_MEASURED + 10 * SAMPLE_EVERY, ALWAYS_MEASURED + 10)
    assert row[LATE_RUNS] - row[LATE_MEASURED] == 10 * (SAMPLE_EVERY - 1)


def test_slow_tasks_and_unknown_headers_are_always_measured():
    tally = TaskTally()
    for _ in range(ALWAYS_MEASURED + 3 * SAMPLE_EVERY):
        assert tally.measure("slow")
        tally.add("slow", SLOW_S * 2, 0)
    assert tally.measure(None) and tally.measure(["not", "a", "name"])


def test_merged_rows_add_counts_and_keep_maxima():
    into = empty_row()
    merge_row(into, [2, 0.5, 0.4, 100, 80, 10, 1, 20, 1, 20, 2, 1])
    merge_row(into, [3, 0.25, 0.2, -50, 30, 90, 2, 40, 2, 30, 1, 1])
    assert into == [5, 0.75, 0.4, 50, 80, 90, 3, 60, 3, 30, 3, 2]
