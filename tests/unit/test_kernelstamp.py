"""Kernel (CLOCK_REALTIME) stamps land on the perf_counter clock, from a bracketed offset."""

from __future__ import annotations

import time

from servemark.client import kernelstamp


def test_a_realtime_reading_maps_onto_perf_counter() -> None:
    before = time.perf_counter()
    ns_total = time.time_ns()
    after = time.perf_counter()
    t = kernelstamp.to_perf(ns_total // 1_000_000_000, ns_total % 1_000_000_000, after)
    assert before - 0.001 < t < after + 0.001


def test_the_offset_is_refreshed_only_after_its_period(monkeypatch) -> None:
    calls: list[int] = []
    real = kernelstamp._measure
    monkeypatch.setattr(kernelstamp, "_measure", lambda: calls.append(1) or real())
    monkeypatch.setattr(kernelstamp, "_taken_at", float("-inf"))
    now = time.perf_counter()
    for k in range(5):
        kernelstamp.to_perf(0, 0, now + k * 0.01)  # within one period: one measurement
    kernelstamp.to_perf(0, 0, now + 1.0)
    assert len(calls) == 2
