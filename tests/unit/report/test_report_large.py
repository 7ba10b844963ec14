"""Reports, comparisons and the resume reader on a run larger than the scan's sample (40,000
records, sample size 400 via SERVEMARK_REPORT_SAMPLE): every figure checked against numpy on
the generating arrays — exact counts, percentiles within the sketch's stated error — the sample
bound kept and labelled, and the comparison's interval covering the true difference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from servemark.metrics.record import RequestRecord
from servemark.metrics.sketch import RELATIVE_ERROR
from servemark.metrics.summary import summarize
from servemark.report.compare import RunGroup, compare
from servemark.report.html import render_html
from servemark.report.plots import _per_request, _streamed_timeline, _thin, make_plots
from servemark.report.run import load_runs
from servemark.report.scan import scan_records
from servemark.report.tables import endpoint_table, error_table
from servemark.store.resume import load_resume_state
from servemark.store.rundir import SCHEMA, RunWriter

N, FAILED, K, CHUNKS = 40_000, 120, 400, 16  # N > the sketch's exact limit (32,768)


def _write(path: Path, ttft_median: float, seed: int) -> dict[str, np.ndarray]:
    """N successes (16 chunks) then FAILED failures in one load point, written by RunWriter;
    returns the per-request truths."""
    rng = np.random.default_rng(seed)
    ttft = ttft_median * rng.lognormal(0.0, 0.3, N)
    gaps = 0.01 * rng.lognormal(0.0, 0.2, (N, CHUNKS - 1))
    chunks = np.concatenate([ttft[:, None], ttft[:, None] + np.cumsum(gaps, axis=1)], axis=1)
    start = np.arange(N) * 0.002
    end = start + chunks[:, -1] + 0.001
    writer = RunWriter(path)
    lines = []
    for i in range(N):
        lines.append(orjson.dumps(RequestRecord(
            request_id=i, load_point="c=64", endpoint="http://e:1", api="completions",
            start_s=float(start[i]), end_s=float(end[i]), chunk_times_s=chunks[i].tolist(),
            input_tokens=32, output_tokens=CHUNKS, token_source="usage", status=200, ok=True)))
    t = float(end.max())
    for j in range(FAILED):
        lines.append(orjson.dumps(RequestRecord(
            request_id=N + j, load_point="c=64", endpoint="http://e:1", api="completions",
            start_s=t + j * 0.001, end_s=t + j * 0.001 + 0.0005, status=500, ok=False,
            error_kind="http_status", error=f"boom {j % 7}")))
    writer.append_lines(b"\n".join(lines) + b"\n")
    doc = {"schema": SCHEMA, "status": "interrupted", "partial": True, "model": "big",
           "config": {"api": "completions", "concurrency": [64], "num_requests": N + FAILED,
                      "seed": 0}, "points": []}
    writer.write_summary(doc)
    writer.close()
    return {"ttft": ttft, "e2e": end - start, "tpot": (end - start - ttft) / (CHUNKS - 1),
            "itl": gaps.ravel(), "itl_mean": gaps.mean(axis=1)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Both runs written and each scanned once (with the small sample size)."""
    root = tmp_path_factory.mktemp("large")
    data: dict[str, object] = {"a": root / "a", "b": root / "b", "ta": _write(root / "a", 0.050, 1),
                               "tb": _write(root / "b", 0.055, 2)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERVEMARK_REPORT_SAMPLE", str(K))
        data["ra"], data["rb"] = load_runs([root / "a", root / "b"])
    return data


def _close(estimate: float, values: np.ndarray, q: float) -> bool:
    """Within the sketch's bound of numpy's percentile (α × the larger neighbouring rank)."""
    s = np.sort(values)
    h = q / 100 * (s.size - 1)
    bound = RELATIVE_ERROR * max(abs(s[int(np.floor(h))]), abs(s[int(np.ceil(h))]))
    return abs(estimate - np.percentile(values, q)) <= bound * (1 + 1e-9) + 1e-15


def test_large_run_figures_sample_and_report(runs: dict, tmp_path: Path) -> None:
    run, truth = runs["ra"], runs["ta"]
    p = run.point_scan("c=64")
    assert p.seen == N + FAILED and len(p.sample) == K and p.sampled  # the bound holds
    assert len({r.request_id for r in p.sample}) == K
    # per-endpoint table: exact counts, percentiles within the sketch's error of numpy's
    (row,) = endpoint_table(run).rows
    assert row[:6] == ["http://e:1", "c=64", str(N + FAILED), str(N), str(FAILED), str(N * CHUNKS)]
    sub = p.by_endpoint()["http://e:1"]
    for metric in ("ttft", "e2e"):
        d = sub.sketch(metric).distribution()
        assert d.count == N and not sub.sketch(metric).exact
        assert _close(d.p50, truth[metric], 50) and _close(d.p99, truth[metric], 99), metric
        assert d.mean == pytest.approx(truth[metric].mean(), rel=1e-9)
    assert row[6] == f"{sub.sketch('ttft').distribution().p50 * 1000:.1f}"
    # errors: exact counts and bounded examples
    (err,) = error_table(run).rows
    assert err[:4] == ["c=64", "http_status", "500", str(FAILED)] and err[4].count("boom") == 5
    # sorted per-request curve: from the accumulator's quantiles at evenly spaced ranks
    (label, idx, values, n), = _per_request([run], lambda r: None, "ttft")
    assert n == N and np.array_equal(idx, _thin(N))
    exact = np.sort(truth["ttft"])[idx] * 1000.0
    assert np.all(np.abs(values - exact) <= RELATIVE_ERROR * exact * 1.001 + 1e-9)
    # the whole report: plots, timeline and the labels saying where figures come from
    plots = make_plots([run, runs["rb"]])
    assert {pl.name for pl in plots} == {"sorted_ttft", "sorted_tpot", "latency_vs_throughput",
                                         "cdf_latency", "timeline"}
    comp = compare([RunGroup("a", [run]), RunGroup("b", [runs["rb"]])], n_boot=200)
    html = render_html([run, runs["rb"]], [], comp, "now")
    assert f"{N + FAILED:,} requests" in html and "quantile sketch" in html
    assert f"sample of {K:,} of {N + FAILED:,} requests" in html


def test_large_run_timeline_keeps_every_token(runs: dict) -> None:
    run = runs["ra"]
    centres, tps, grid, in_flight, t0 = _streamed_timeline(run.scan)
    width = centres[1] - centres[0]
    assert float((tps * width).sum()) == pytest.approx(N * CHUNKS, rel=1e-9)  # no token lost
    # sequential-ish sends every 2 ms, each lasting ~0.2 s: about 100 in flight mid-run
    mid = in_flight[len(in_flight) // 4: len(in_flight) // 2]
    expected = runs["ta"]["e2e"].mean() / 0.002
    assert np.median(mid) == pytest.approx(expected, rel=0.05)
    assert in_flight.min() >= 0


def test_large_compare_interval_covers_the_truth(runs: dict) -> None:
    a, b = runs["ra"], runs["rb"]
    comp = compare([RunGroup("a", [a]), RunGroup("b", [b])], n_boot=400, seed=1)
    assert comp.samples == [f"a · c=64: sample of {K:,} of {N + FAILED:,} requests",
                            f"b · c=64: sample of {K:,} of {N + FAILED:,} requests"]
    assert "samples" in comp.to_dict()
    pc = comp.points[0]
    for metric, key in (("ttft", "ttft"), ("e2e", "e2e"), ("itl", "itl_mean"), ("tpot", "tpot")):
        d = pc.delta(f"{metric}_p50")
        med_a, med_b = np.median(runs["ta"][key]), np.median(runs["tb"][key])
        true = (med_b - med_a) * 1e3  # each side's p50 within the sketch's error of numpy's
        assert d.abs_delta == pytest.approx(true, abs=RELATIVE_ERROR * (med_a + med_b) * 1e3 * 1.01), metric
        assert d.ci_low is not None and d.ci_high is not None
        # the interval is that of 60,000 requests: much narrower than a 400-request bootstrap
        sd_median = 1.2533 * runs["ta"][key].std() / np.sqrt(N) * 1e3 * np.sqrt(2)
        assert d.ci_high - d.ci_low < 8 * sd_median, metric
    ttft = pc.delta("ttft_p50")
    assert ttft.significant and ttft.ci_low < ttft.abs_delta < ttft.ci_high
    # the same run against itself: no significant change
    same = compare([RunGroup("a", [a]), RunGroup("a again", [a])], n_boot=400).points[0]
    assert all(same.delta(f"{m}_p50").significant is False for m in ("ttft", "tpot", "itl", "e2e"))


def test_resume_reader_keeps_ids_and_accumulator_not_records(runs: dict, tmp_path: Path) -> None:
    run = tmp_path / "r"
    shutil.copytree(runs["a"], run)
    with open(run / "requests.jsonl", "ab") as fh:  # a torn last line
        fh.write(b'{"request_id": 99')
    state = load_resume_state(run)
    assert state.torn_bytes > 0 and state.records_kept == N + FAILED
    prior = state.prior("c=64")
    assert prior is not None and prior.records == N + FAILED and prior.first_requests == N + FAILED
    assert all(i in prior.ids for i in (0, N // 2, N + FAILED - 1)) and (N + FAILED) not in prior.ids
    assert prior.max_id == N + FAILED - 1
    from servemark.store.rundir import iter_records

    recs = [r for r in iter_records(run / "requests.jsonl") if r is not None]
    again, _ = scan_records(recs, K, by_endpoint=False)  # the reservoir is seeded: the same run, the same sample
    assert [r.request_id for r in again.point("c=64").sample] == \
        [r.request_id for r in runs["ra"].point_scan("c=64").sample]
    expected = summarize(recs, "c=64").to_dict()
    from servemark.metrics.summary import summary_of

    assert json.dumps(summary_of(prior.acc, "c=64").to_dict()) == json.dumps(expected)
    assert state.time_offset_s == max(r.end_s for r in recs)


def test_timeline_histogram_stays_bounded_on_a_very_long_run() -> None:
    from servemark.report.scan import FINE_S, MAX_FINE, TimeHistogram

    h = TimeHistogram()
    rng = np.random.default_rng(0)
    total = 0.0
    for day in range(3):  # three days of sends: 10 ms bins would need 26 million
        t = rng.uniform(day * 86_400.0, (day + 1) * 86_400.0, 50_000)
        h.add(t, np.full(t.size, 2.0))
        total += 2.0 * t.size
    h.add_chunks([0.5, 0.75], 10.0, 1.5)
    centres, weights = h.centres()
    assert h.counts.size <= MAX_FINE and h.width > FINE_S
    assert float(weights.sum()) == pytest.approx(total + 3.0)
    assert centres.min() >= 0 and centres.max() <= 3 * 86_400.0 + h.width
