"""--workers: several client processes, one global schedule, one merged run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import servemark
from servemark.client.openai import RequestSpec
from servemark.load.schedule import LoadPoint
from servemark.load.workers import plan_jobs, split
from servemark.metrics.summary import summarize
from servemark.store.rundir import load_records


def test_split_sums_and_balances() -> None:
    assert split(10, 3) == [4, 3, 3] and sum(split(257, 4)) == 257
    assert split(2, 4) == [1, 1, 0, 0]


def test_open_loop_jobs_deal_one_global_schedule() -> None:
    specs = [RequestSpec(i, "completions", prompt="x") for i in range(100)]
    common = dict(targets=(), lb_policy="round-robin", opts=None, timeouts=None, http_client="fast", t0=0.0, label="r",
                  grace_period_s=1.0)
    point = LoadPoint(request_rate=50.0, max_concurrency=9)
    jobs = plan_jobs(point, specs, 3, 100, None, random.Random(5), common)
    merged = sorted(o for j in jobs for o in (j.offsets or []))
    single = plan_jobs(point, specs, 1, 100, None, random.Random(5), common)[0].offsets
    assert merged == single and len(merged) == 100
    assert sorted(s.request_id for j in jobs for s in j.specs) == list(range(100))
    assert sum(j.point.max_concurrency or 0 for j in jobs) == 9


def test_closed_loop_jobs_split_concurrency_and_budget() -> None:
    specs = [RequestSpec(i, "completions", prompt="x") for i in range(30)]
    common = dict(targets=(), lb_policy="round-robin", opts=None, timeouts=None, http_client="fast", t0=0.0, label="c",
                  grace_period_s=1.0)
    jobs = plan_jobs(LoadPoint(concurrency=5), specs, 2, 30, None, random.Random(0), common)
    assert [j.point.concurrency for j in jobs] == [3, 2]
    assert sum(j.num_requests or 0 for j in jobs) == 30


@pytest.mark.parametrize("kw", [dict(concurrency=[8]), dict(request_rate=[200.0], arrival="constant")])
def test_two_workers_against_stub(stub_server, tmp_path: Path, kw: dict) -> None:
    stub = stub_server("--ttft", "0.005", "--itl", "0.002")
    cfg = servemark.BenchConfig(base_url=stub.base_url, num_requests=60, input_len=16,
                                output_len=8, workers=2, output_dir=tmp_path / "run", **kw)
    result = servemark.bench(cfg)
    p = result.points[0]
    assert p.completed == 60 and p.failed == 0
    recs = load_records(tmp_path / "run").records
    assert len(recs) == 60 and len({r.request_id for r in recs}) == 60
    assert all(r.output_tokens == 8 and r.chunk_times_s for r in recs)
    assert {r.worker for r in recs} == {"w0", "w1"}
    # the parent never parsed the records: its summary is the workers' merged accumulators,
    # and equals the summary of everything they wrote
    again = summarize(recs, p.label)
    assert (again.completed, again.output_tokens_total) == (p.completed, p.output_tokens_total)
    for metric in ("ttft_s", "itl_s", "e2e_s"):
        assert getattr(p, metric).to_dict() == pytest.approx(getattr(again, metric).to_dict())
    assert p.fidelity is not None and p.fidelity.client_cpu_s is not None
    # every worker timed its own event loop: the point carries the latest one's p99
    assert p.fidelity.loop_lag_p99_s is not None and 0 <= p.fidelity.loop_lag_p99_s < 1.0
    if "request_rate" in kw:
        starts = sorted(r.scheduled_s for r in recs)
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert all(g == pytest.approx(0.005, abs=1e-9) for g in gaps)  # one global constant schedule
        assert p.fidelity.schedule_lag_s.p50 < 0.01


def test_two_workers_duration_bounded(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--ttft", "0.002")
    cfg = servemark.BenchConfig(base_url=stub.base_url, duration_s=1.0, concurrency=[4],
                                input_len=16, output_len=4, workers=2, output_dir=tmp_path / "run")
    p = servemark.bench(cfg).points[0]
    assert p.completed > 20 and p.duration_s < 2.0
    recs = load_records(tmp_path / "run").records
    assert len({r.request_id for r in recs}) == len(recs)


@pytest.mark.parametrize("workers,kw", [(1, dict(concurrency=[2, 4])),
                                        (2, dict(request_rate=[400.0], arrival="constant"))])
def test_runs_longer_than_the_prompt_pool_reuse_it_with_fresh_ids(
        stub_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, kw: dict) -> None:
    import servemark.api

    monkeypatch.setattr(servemark.api, "PROMPT_POOL_MAX", 7)  # bounded work items per point
    stub = stub_server()
    cfg = servemark.BenchConfig(base_url=stub.base_url, num_requests=40, input_len=8,
                                output_len=2, workers=workers, output_dir=tmp_path / "run",
                                server_metrics=False, **kw)
    points = servemark.bench(cfg).points
    recs = load_records(tmp_path / "run").records
    total = 40 * len(points)
    assert all(p.completed == 40 for p in points)
    assert len(recs) == total and len({r.request_id for r in recs}) == total  # unique across points


def test_parent_keeps_the_latest_workers_loop_lag() -> None:
    """Each worker reports its own event loop's p99 lateness; the point carries the largest (a
    stream is read by one worker only, so one late worker is enough for reads to merge)."""
    import asyncio
    import multiprocessing as mp

    from servemark.load.runner import LiveCounters, RunControl
    from servemark.load.workers import drive_workers
    from servemark.metrics.accumulate import PointAccumulator

    pairs = [mp.Pipe(duplex=True) for _ in range(3)]
    lags = [0.0012, 0.034, None]  # the third worker's timer never fired

    def play_worker(conn, lag) -> None:  # noqa: ANN001 - a pipe end
        conn.send(("ready", None))
        assert conn.recv()[0] == "go"
        conn.send(("done", (0.5, PointAccumulator(), lag)))

    import threading
    threads = [threading.Thread(target=play_worker, args=(child, lag))
               for (_, child), lag in zip(pairs, lags, strict=True)]
    for t in threads:
        t.start()
    outcome = asyncio.run(drive_workers([p for p, _ in pairs], lambda *a: None, RunControl(),
                                        LiveCounters(), PointAccumulator()))
    for t in threads:
        t.join(5)
    assert outcome.complete and outcome.cpu_s == pytest.approx(1.5)
    assert outcome.loop_lag_p99_s == pytest.approx(0.034)
