"""Long runs: peak memory (RSS) against the number of requests, to show it stays flat.

Two measurements, each size in a fresh process (peak RSS = ``ru_maxrss``):
- ``synthetic``: N synthetic 16-chunk records folded into a load point's accumulator and
  summarized (the path every record takes), beside the old way of keeping them in a list;
- ``stub``: a real ``servemark bench`` of N requests (8-token prompts, 4-token outputs,
  concurrency 64) against the zero-delay stub in its own process; records go to requests.jsonl.
- ``report``: a synthetic run directory of N records (16-64 chunks each, written by the store's
  own ``RunWriter``, summarized by the accumulator as ``bench`` does) is written once per size;
  then, each in a fresh process, ``servemark report RUN_DIR`` (HTML report and plots),
  ``servemark compare RUN_DIR RUN_DIR`` and the resume reader (``load_resume_state``).
Prints figures; it is a benchmark, not a test. A real million takes ~10 minutes per million on
a busy 2-core machine: ``--stub-sizes 10000,100000,1000000``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def synthetic_record(i: int, rng: random.Random, chunks: int = 16):  # noqa: ANN201
    from servemark.metrics.record import RequestRecord

    times = [rng.uniform(0.01, 0.05)]
    for _ in range(chunks - 1):
        times.append(times[-1] + rng.uniform(0.009, 0.011))
    return RequestRecord(request_id=i, load_point="p", endpoint="e", api="completions",
                         start_s=i * 1e-4, end_s=i * 1e-4 + times[-1] + 1e-3, chunk_times_s=times,
                         input_tokens=32, output_tokens=chunks, token_source="usage", ok=True)


def one_synthetic(n: int, keep: bool) -> dict[str, float]:
    from servemark.metrics.accumulate import PointAccumulator
    from servemark.metrics.summary import summarize, summary_of

    rng = random.Random(0)
    t = time.perf_counter()
    if keep:  # what a list of records costs
        summary = summarize([synthetic_record(i, rng) for i in range(n)], "p")
    else:
        acc = PointAccumulator()
        for i in range(n):
            acc.add(synthetic_record(i, rng))
        summary = summary_of(acc, "p")
    assert summary.completed == n
    return {"seconds": time.perf_counter() - t}


def one_stub(n: int) -> dict[str, float]:
    from servemark.api import bench
    from servemark.spec import BenchConfig
    from servemark.stub.process import StubProcess

    with StubProcess() as stub, tempfile.TemporaryDirectory() as tmp:
        cfg = BenchConfig(base_url=stub.base_url, concurrency=[64], num_requests=n, input_len=8,
                          output_len=4, output_dir=Path(tmp) / "run", results_root=Path(tmp))
        t = time.perf_counter()
        p = bench(cfg).points[0]
        with open(Path(tmp) / "run" / "requests.jsonl", "rb") as fh:
            lines = sum(1 for _ in fh)
        assert p.completed == n == lines, (p.completed, lines)
        return {"seconds": time.perf_counter() - t, "requests_per_s": p.requests_per_s or 0.0}


def write_synthetic_run(path: Path, n: int, points: int = 2) -> None:
    """N records over ``points`` load points, as a bench run lays them out; interrupted during its
    last point (so the resume reader accepts it and accumulates that point)."""
    from servemark.metrics.accumulate import PointAccumulator
    from servemark.metrics.record import RequestRecord
    from servemark.metrics.summary import summary_of
    from servemark.store.rundir import SCHEMA, RunWriter, csv_row

    rng = random.Random(1)
    writer = RunWriter(path)
    summaries, t, per = [], 0.0, n // points
    for p in range(points):
        label = f"c={64 * (p + 1)}"
        acc = PointAccumulator()
        batch = []
        for i in range(per if p < points - 1 else n - per * (points - 1)):
            chunks = rng.randint(16, 64)
            times = [rng.lognormvariate(math.log(0.05), 0.3)]
            for _ in range(chunks - 1):
                times.append(times[-1] + rng.lognormvariate(math.log(0.01), 0.2))
            start = t + i * 2e-4
            ok = rng.random() > 0.002
            rec = RequestRecord(
                request_id=p * per + i, load_point=label, endpoint="http://127.0.0.1:8000",
                api="completions", start_s=start, end_s=start + times[-1] + 1e-3,
                chunk_times_s=times if ok else [], requested_input_tokens=128,
                requested_output_tokens=chunks, input_tokens=128, output_tokens=chunks if ok else None,
                token_source="usage" if ok else None, status=200 if ok else 500, ok=ok,
                error_kind=None if ok else "http_status", error=None if ok else "server said no",
                finish_reason="length" if ok else None, output_chars=4 * chunks if ok else 0)
            acc.add(rec)
            batch.append(orjson.dumps(rec) + b"\n")
            if len(batch) >= 4096:
                writer.append_lines(b"".join(batch))
                batch = []
        if batch:
            writer.append_lines(b"".join(batch))
        t = max(t + per * 2e-4, acc.end_max) + 0.01
        summaries.append(summary_of(acc, label, 64 * (p + 1)))
    doc = {"schema": SCHEMA, "status": "interrupted", "partial": True, "model": "synthetic",
           "started_at": "2026-12-01T00:00:00+00:00", "tokenizer": "synthetic",
           "config": {"api": "completions", "input_len": 128, "output_len": 64,
                      "concurrency": [64 * (p + 1) for p in range(points)], "num_requests": per,
                      "warmup": 0, "seed": 0},
           "points": [s.to_dict() for s in summaries[:-1]]}  # the last point was interrupted
    writer.write_summary(doc)
    writer.write_csv([csv_row(s, "synthetic", "completions") for s in summaries])
    writer.close()


def one_report(kind: str, run_dir: Path) -> dict[str, float]:
    t = time.perf_counter()
    if kind == "resume":
        from servemark.store.resume import load_resume_state

        load_resume_state(run_dir)
    else:
        from typer.testing import CliRunner

        from servemark.cli.main import app

        args = (["report", str(run_dir), "--out", str(run_dir / "report")] if kind == "report"
                else ["compare", str(run_dir), str(run_dir), "--n-boot", "2000"])
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    return {"seconds": time.perf_counter() - t}


def measure(kind: str, n: int | str, keep: bool = False) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", kind, str(n)] + (["--keep"] if keep else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic-sizes", default="10000,100000,1000000")
    parser.add_argument("--keep-sizes", default="10000,100000",
                        help="sizes also measured keeping every record (the old way)")
    parser.add_argument("--stub-sizes", default="10000,50000,200000")
    parser.add_argument("--report-sizes", default="100000,1000000",
                        help="synthetic run directories to report on, compare and resume")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", default="0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind = args.one[0]
        if kind in ("report", "compare", "resume"):
            fig = one_report(kind, Path(args.one[1]))
        elif kind == "write":
            write_synthetic_run(Path(args.one[1]), int(args.n))
            fig = {"seconds": 0.0}
        else:
            n = int(args.one[1])
            fig = one_synthetic(n, args.keep) if kind == "synthetic" else one_stub(n)
        fig["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(fig))
        return
    keep = {int(x) for x in args.keep_sizes.split(",") if x}
    print(f"{'path':<28} {'requests':>10} {'peak RSS MiB':>13} {'seconds':>9}")
    for n in (int(x) for x in args.synthetic_sizes.split(",") if x):
        f = measure("synthetic", n)
        print(f"{'accumulator (synthetic)':<28} {n:>10,} {f['peak_rss_mib']:>13.1f} {f['seconds']:>9.1f}")
        if n in keep:
            f = measure("synthetic", n, keep=True)
            print(f"{'records kept in a list':<28} {n:>10,} {f['peak_rss_mib']:>13.1f} {f['seconds']:>9.1f}")
    for n in (int(x) for x in args.stub_sizes.split(",") if x):
        f = measure("stub", n)
        print(f"{'bench vs zero-delay stub':<28} {n:>10,} {f['peak_rss_mib']:>13.1f} "
              f"{f['seconds']:>9.1f}  ({f['requests_per_s']:,.0f} req/s)")
    for n in (int(x) for x in args.report_sizes.split(",") if x):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            subprocess.run([sys.executable, __file__, "--one", "write", str(run_dir), "--n", str(n)],
                           check=True, capture_output=True)
            mib = sum(f.stat().st_size for f in run_dir.iterdir()) / 2**20
            for kind, name in (("report", "report (HTML + plots)"), ("compare", "compare RUN RUN"),
                               ("resume", "resume reader")):
                f = measure(kind, str(run_dir))
                print(f"{name:<28} {n:>10,} {f['peak_rss_mib']:>13.1f} {f['seconds']:>9.1f}"
                      f"  ({mib:,.0f} MiB on disk)", flush=True)


if __name__ == "__main__":
    main()
