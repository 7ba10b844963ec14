"""Endpoint pickers: round-robin order and least-outstanding choice, ties and releases."""

from __future__ import annotations

from collections import Counter

import pytest

from servemark.load.balance import LeastOutstanding, RoundRobin, make_picker

URLS = ["http://a", "http://b", "http://c"]


def test_round_robin_cycles_in_order_regardless_of_load() -> None:
    p = RoundRobin(URLS)
    picks = [p.acquire() for _ in range(7)]
    assert picks == URLS * 2 + ["http://a"]
    assert p.outstanding == {"http://a": 3, "http://b": 2, "http://c": 2}


def test_least_outstanding_prefers_idle_endpoint() -> None:
    p = LeastOutstanding(URLS)
    assert [p.acquire() for _ in range(3)] == URLS  # all equal: in turn
    p.release("http://b")
    assert p.acquire() == "http://b"  # the only one with nothing in flight
    p.release("http://c")
    p.release("http://a")
    # a and c both have 0 in flight; the turn continues after b, so c first
    assert p.acquire() == "http://c"
    assert p.acquire() == "http://a"


def test_least_outstanding_spreads_equal_servers_evenly() -> None:
    p = LeastOutstanding(URLS[:2])
    counts: Counter[str] = Counter()
    for _ in range(10):  # sequential requests (nothing ever in flight at a pick)
        url = p.acquire()
        counts[url] += 1
        p.release(url)
    assert counts == {"http://a": 5, "http://b": 5}


def test_least_outstanding_never_exceeds_one_more_than_the_least() -> None:
    p = LeastOutstanding(URLS)
    held: list[str] = []
    for i in range(50):
        held.append(p.acquire())
        if i % 3 == 2:
            p.release(held.pop(0))
        assert max(p.outstanding.values()) - min(p.outstanding.values()) <= 1


def test_unknown_policy_and_no_endpoints() -> None:
    with pytest.raises(ValueError, match="round-robin, least-outstanding"):
        make_picker("random", URLS)
    with pytest.raises(ValueError):
        RoundRobin([])
