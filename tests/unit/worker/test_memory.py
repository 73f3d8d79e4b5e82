"""MemoryProbe: the process's own memory, cheap enough to read after every task."""

from __future__ import annotations

import psutil

from celeriac.worker.memory import MemoryProbe


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
    before = probe.rss_kib()
    block = b"x" * (32 * 1024 * 1024)
    after = probe.rss_kib()
    assert after - before >= 24 * 1024
    del block
