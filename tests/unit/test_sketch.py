"""Bounded-memory summaries: the quantile sketch against numpy, merging, and the accumulator."""

from __future__ import annotations

import dataclasses
import random
import tracemalloc

import numpy as np
import pytest

from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.record import RequestRecord
from servemark.metrics.sketch import RELATIVE_ERROR, QuantileSketch
from servemark.metrics.stats import PERCENTILES, describe
from servemark.metrics.summary import summarize, summary_of


def samples(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lognormal":
        return rng.lognormal(-4.0, 1.5, n)
    if kind == "bimodal":  # fast cache hits and slow prefills
        return np.where(rng.random(n) < 0.7, rng.normal(0.01, 0.001, n), rng.normal(0.8, 0.1, n))
    if kind == "signed":  # schedule lag: mostly tiny, some early, some exact zeros
        v = rng.normal(0.0005, 0.002, n)
        v[rng.random(n) < 0.05] = 0.0
        return v
    return rng.uniform(1e-6, 100.0, n)  # wide range


def within_bound(est: float, values: np.ndarray, q: float) -> bool:
    """|est − numpy| ≤ α·max(|x_lo|, |x_hi|) + the zero threshold: the stated bound."""
    s = np.sort(values)
    h = q / 100 * (s.size - 1)
    lo, hi = s[int(np.floor(h))], s[int(np.ceil(h))]
    bound = RELATIVE_ERROR * max(abs(lo), abs(hi)) + 1e-12
    return abs(est - float(np.percentile(values, q))) <= bound * (1 + 1e-9)


@pytest.mark.parametrize("kind", ["lognormal", "bimodal", "signed", "wide"])
def test_sketch_percentiles_within_stated_relative_error(kind: str) -> None:
    values = samples(kind, 200_000, seed=len(kind))
    sk = QuantileSketch(exact_limit=1000)
    sk.extend(values[:1000])
    for v in values[1000:3000]:  # one at a time too
        sk.add(float(v))
    sk.extend(values[3000:])
    assert not sk.exact
    d = sk.distribution()
    assert d.count == values.size
    assert d.min == values.min() and d.max == values.max()
    assert d.mean == pytest.approx(values.mean(), rel=1e-9, abs=1e-15)
    assert d.std == pytest.approx(values.std(), rel=1e-9)
    for q in (*PERCENTILES, 0.1, 25.0, 99.9):
        est = sk.percentiles([q])[0]
        assert within_bound(est, values, q), (kind, q, est, np.percentile(values, q))
    # and the bound is not vacuous: a coarser sketch is measurably worse somewhere
    coarse = QuantileSketch(exact_limit=0, relative_error=0.05)
    coarse.extend(values)
    assert max(abs(coarse.percentiles([q])[0] - np.percentile(values, q)) for q in PERCENTILES) \
        > max(abs(sk.percentiles([q])[0] - np.percentile(values, q)) for q in PERCENTILES)


def test_exact_below_the_limit_is_numpy() -> None:
    values = samples("lognormal", 5000, seed=1)
    sk = QuantileSketch(exact_limit=5000)
    for v in values:
        sk.add(float(v))
    assert sk.exact and sk.distribution() == describe(values)


def test_merged_sketches_equal_one_sketch_of_everything() -> None:
    values = samples("bimodal", 60_000, seed=3)
    whole = QuantileSketch(exact_limit=10_000)
    whole.extend(values)
    parts = [QuantileSketch(exact_limit=10_000) for _ in range(4)]
    for i, part in enumerate(parts):
        part.extend(values[i::4])  # each part alone stays exact; merged they are not
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert not merged.exact
    a, b = merged.distribution(), whole.distribution()
    assert a.count == b.count and a.min == b.min and a.max == b.max
    assert a.mean == pytest.approx(b.mean, rel=1e-12) and a.std == pytest.approx(b.std, rel=1e-9)
    assert [a.p50, a.p90, a.p95, a.p99] == [b.p50, b.p90, b.p95, b.p99]
    small = QuantileSketch()
    small.extend([1.0, 2.0])
    other = QuantileSketch()
    other.extend([3.0])
    small.merge(other)
    assert small.exact and small.distribution() == describe([1.0, 2.0, 3.0])


def synthetic(i: int, rng: random.Random, chunks: int = 16, endpoint: str = "e0") -> RequestRecord:
    times = [rng.uniform(0.01, 0.05)]
    for _ in range(chunks - 1):
        times.append(times[-1] + rng.uniform(0.009, 0.011))
    kind = rng.random()
    return RequestRecord(
        request_id=i, load_point="p", endpoint=endpoint, api="completions", start_s=i * 0.001,
        end_s=i * 0.001 + times[-1] + 0.001, chunk_times_s=times, scheduled_s=i * 0.001 - 0.0002,
        requested_input_tokens=32, input_tokens=32 if kind > 0.01 else 31, output_tokens=chunks,
        token_source="usage", status=200, ok=kind > 0.02,
        error_kind=None if kind > 0.02 else ("cancelled" if kind < 0.005 else "timeout"))


def test_accumulator_merge_equals_summarize_all() -> None:
    rng = random.Random(7)
    recs = [synthetic(i, rng, endpoint=f"e{i % 2}") for i in range(600)]
    parts = [PointAccumulator(threshold_tps=1400.0, by_endpoint=True) for _ in range(3)]
    for i, r in enumerate(recs):
        parts[i % 3].add(r)
    for p in parts[1:]:
        parts[0].merge(p)
    merged = summary_of(parts[0], "p", client_cpu_s=0.1).to_dict()
    direct = summarize(recs, "p", client_cpu_s=0.1, threshold_tps=1400.0).to_dict()
    assert merged.keys() == direct.keys()
    assert merged["completed"] + merged["failed"] + merged["cancelled"] == 600
    for key, value in direct.items():
        if isinstance(value, dict) and "count" in value:
            assert merged[key] == pytest.approx(value), key
        elif key == "fidelity":
            for fk, fv in value.items():
                assert merged[key][fk] == (pytest.approx(fv) if isinstance(fv, dict | float) else fv)
        else:
            assert merged[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert parts[0].endpoints is not None and set(parts[0].endpoints) == {"e0", "e1"}


def test_summary_in_sketch_mode_stays_within_bound() -> None:
    rng = random.Random(11)
    recs = [synthetic(i, rng) for i in range(3000)]
    acc = PointAccumulator(exact_limit=100)
    for r in recs:
        acc.add(r)
    approx, exact = summary_of(acc, "p"), summarize(recs, "p")
    assert not acc.sketch("ttft").exact
    for metric in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        a, e = getattr(approx, metric), getattr(exact, metric)
        assert a.count == e.count and a.min == e.min and a.max == e.max
        assert a.mean == pytest.approx(e.mean, rel=1e-9)
        for q in ("p50", "p90", "p95", "p99"):
            assert getattr(a, q) == pytest.approx(getattr(e, q), rel=RELATIVE_ERROR * 1.01), (metric, q)


def test_memory_stays_flat_from_20k_to_100k_records() -> None:
    """Python and numpy allocations (tracemalloc), not RSS: deterministic, not timing-based."""
    rng = random.Random(3)
    # a small exact part, so that all of it is full by 20k records (the default is 32,768 values)
    acc = PointAccumulator(by_endpoint=True, exact_limit=2000)
    tracemalloc.start()
    try:
        pool = [synthetic(i, rng, chunks=8, endpoint=f"e{i % 4}") for i in range(256)]
        for i in range(100_000):  # fresh records (as a run makes them) from a pool of values
            r = pool[i % 256]
            acc.add(dataclasses.replace(r, request_id=i, start_s=i * 0.001, end_s=r.end_s - r.start_s + i * 0.001))
            if i == 20_000:
                acc.fold()  # measure without the (bounded) batches held back for vectorizing
                at_20k = tracemalloc.get_traced_memory()[0]
        acc.fold()
        at_100k = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # the records alone would be ~80k x ~1 KB; the sketches hold bucket counts only
    assert at_100k - at_20k < 500_000, (at_20k, at_100k)
    assert acc.nbytes() < 8_000_000
    assert summary_of(acc, "p").completed == acc.completed > 95_000


def test_point_rebuilt_from_requests_jsonl_when_a_worker_died(tmp_path) -> None:  # noqa: ANN001
    """The fallback when a worker ended without its accumulator: stream the file, one point."""
    from servemark.api import _accumulate_from_disk
    from servemark.store.rundir import RunWriter

    rng = random.Random(5)
    recs = [synthetic(i, rng) for i in range(300)]
    writer = RunWriter(tmp_path)
    for r in recs:
        writer.append(r)
    other = synthetic(999, rng)
    other.load_point = "another"
    writer.append(other)
    writer.close()
    acc = _accumulate_from_disk(tmp_path, "p", None, by_endpoint=False)
    assert acc.records == 300
    assert summary_of(acc, "p").to_dict() == summarize(recs, "p").to_dict()
