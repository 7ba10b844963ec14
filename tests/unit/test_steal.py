"""Steal time from /proc/stat: parsing, the share over an interval, and the live reading."""

from __future__ import annotations

import sys
import time

import pytest

from servemark.load.steal import parse_ticks, read_ticks, steal_share

STAT = """cpu  300 0 60 9000 5 0 10 40 0 0
cpu0 100 0 20 4500 2 0 5 30 0 0
cpu1 200 0 40 4500 3 0 5 10 0 0
intr 123 4 5
ctxt 999
"""


def test_parse_ticks_sums_the_cpus_asked_for() -> None:
    assert parse_ticks(STAT) == (40, 4657 + 4758)  # the per-CPU lines, not the "cpu" total
    assert parse_ticks(STAT, {0}) == (30, 100 + 20 + 4500 + 2 + 5 + 30)
    assert parse_ticks(STAT, {1}) == (10, 200 + 40 + 4500 + 3 + 5 + 10)
    assert parse_ticks(STAT, {7}) is None  # a CPU that is not there
    assert parse_ticks("intr 1\n") is None
    assert parse_ticks("cpu0 1 2 3\n") is None  # an old kernel without the steal column


def test_steal_share_over_an_interval() -> None:
    assert steal_share((30, 1000), (55, 1100)) == pytest.approx(0.25)
    assert steal_share((30, 1000), (30, 1000)) is None  # no tick passed
    assert steal_share(None, (30, 1000)) is None


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/stat is Linux's")
def test_read_ticks_counts_this_machines_time() -> None:
    before = read_ticks()
    end = time.perf_counter() + 0.1
    while time.perf_counter() < end:
        pass
    after = read_ticks()
    assert before is not None and after is not None
    assert after[1] > before[1] and after[0] >= before[0]
    share = steal_share(before, after)
    assert share is not None and 0.0 <= share <= 1.0
    assert read_ticks("/nonexistent/stat") is None
