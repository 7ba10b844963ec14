"""Long runs: peak memory (RSS) against the number of requests, to show it stays flat.

Two measurements, each size in a fresh process (peak RSS = ``ru_maxrss``):
- ``synthetic``: N synthetic 16-chunk records folded into a load point's accumulator and
  summarized (the path every record takes), beside the old way of keeping them in a list;
- ``stub``: a real ``servemark bench`` of N requests (8-token prompts, 4-token outputs,
  concurrency 64) against the zero-delay stub in its own process; records go to requests.jsonl.
Prints figures; it is a benchmark, not a test. A real million takes ~10 minutes per million on
a busy 2-core machine: ``--stub-sizes 10000,100000,1000000``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def measure(kind: str, n: int, keep: bool = False) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", kind, str(n)] + (["--keep"] if keep else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic-sizes", default="10000,100000,1000000")
    parser.add_argument("--keep-sizes", default="10000,100000",
                        help="sizes also measured keeping every record (the old way)")
    parser.add_argument("--stub-sizes", default="10000,50000,200000")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, n = args.one[0], int(args.one[1])
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


if __name__ == "__main__":
    main()
