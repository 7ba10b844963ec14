"""Timing fidelity: how far servemark's measured TTFT and ITL are from a server's known truth.

The stub runs in its own process (pinned to the last core where taskset exists), its paced
engine (``--engine fast``: one scheduler, schedule from the kernel arrival) with a known
50 ms TTFT and 10 ms between chunks; the client (pinned to core 0) runs closed loop at 256 and
1,024 concurrent streams. Printed: measured mean ITL and TTFT minus the truth, the stub's own
lateness (``/stub/stats``: how late it actually wrote its chunks, from the kernel arrival of
each request) and the TTFT error against that measured truth (ttft + the stub's mean first-chunk
lateness; ITL likewise against the stub's actual mean gap), the stub's own CPU share, the
hypervisor's steal of the client core (on an oversubscribed VM its pauses count as latency:
read a point with steal as the machine's figure, not the client's), and under saturation (a
zero-delay stub, c=256, on whichever engine is faster there: ``--saturation-engine``) the TTFT
inflation. Targets of the load-generator issue: ITL within 0.5 ms, TTFT within 2 ms, saturation
TTFT inflation under 5 ms. Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from servemark.api import bench  # noqa: E402
from servemark.spec import BenchConfig  # noqa: E402
from servemark.stub.process import StubProcess, pin_beside_stub  # noqa: E402


@dataclass(frozen=True)
class Fidelity:
    concurrency: int
    ttft_truth_s: float
    itl_truth_s: float
    ttft_mean_s: float
    itl_mean_s: float
    stub_first_late_s: float | None
    stub_next_late_s: float | None
    chunks_per_s: float
    client_cpu_util: float | None
    stub_cpu_util: float | None = None
    stub_parse_delay_s: float | None = None
    stub_first_late_max_s: float | None = None
    stub_next_late_max_s: float | None = None
    stub_gap_s: float | None = None  # the stub's actual mean gap before later chunks
    steal_share: float | None = None  # of the client core's time, taken by the hypervisor

    @property
    def ttft_error_s(self) -> float:
        return self.ttft_mean_s - self.ttft_truth_s

    @property
    def ttft_error_measured_s(self) -> float | None:
        """Against what the stub actually did: ttft + its mean first-chunk lateness."""
        if self.stub_first_late_s is None:
            return None
        return self.ttft_mean_s - self.ttft_truth_s - self.stub_first_late_s

    @property
    def itl_error_s(self) -> float:
        return self.itl_mean_s - self.itl_truth_s

    @property
    def itl_error_measured_s(self) -> float | None:
        """Against the gaps the stub actually left (itl + how its lateness grew)."""
        return None if self.stub_gap_s is None else self.itl_mean_s - self.stub_gap_s


def measure(concurrency: int, ttft_s: float, itl_s: float, output_len: int, rounds: int,
            stub_cpu: int | None, engine: str = "fast") -> Fidelity:
    """One closed-loop point: ``rounds`` requests per stream against a paced stub."""
    with StubProcess("--ttft", str(ttft_s), "--itl", str(itl_s), cpu=stub_cpu,
                     engine=engine) as stub, tempfile.TemporaryDirectory() as tmp:
        cfg = BenchConfig(base_url=stub.base_url, concurrency=[concurrency],
                          num_requests=concurrency * rounds, input_len=128, output_len=output_len,
                          output_dir=Path(tmp) / "run", results_root=Path(tmp))
        cpu0, t0 = stub.cpu_s(), time.perf_counter()
        p = bench(cfg).points[0]
        stub_util = (stub.cpu_s() - cpu0) / (time.perf_counter() - t0)
        with urllib.request.urlopen(stub.base_url + "/stub/stats", timeout=5) as resp:  # noqa: S310
            stats = json.loads(resp.read())
    chunks = (p.output_tokens_per_s or 0.0)
    return Fidelity(concurrency, ttft_s, itl_s, p.ttft_s.mean or 0.0, p.itl_s.mean or 0.0,
                    stats.get("mean_first_chunk_late_s"), stats.get("mean_next_chunk_late_s"),
                    chunks, p.fidelity.client_cpu_util if p.fidelity else None, stub_util,
                    stats.get("mean_parse_delay_s"), stats.get("max_first_chunk_late_s"),
                    stats.get("max_next_chunk_late_s"), stats.get("mean_next_chunk_gap_s"),
                    p.fidelity.steal_share if p.fidelity else None)


def _ms(v: float | None, signed: bool = True) -> str:
    if v is None:
        return "–"
    return f"{v * 1000:+.3f}" if signed else f"{v * 1000:.3f}"


def _share(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="256,1024")
    parser.add_argument("--output-len", type=int, default=64, help="chunks per response")
    parser.add_argument("--rounds", type=int, default=2, help="requests per stream")
    parser.add_argument("--ttft", type=float, default=0.050)
    parser.add_argument("--itl", type=float, default=0.010)
    parser.add_argument("--engine", default="fast", choices=("fast", "asyncio"),
                        help="stub engine for the paced points")
    parser.add_argument("--saturation-engine", default="fast", choices=("fast", "asyncio"),
                        help="stub engine for the zero-delay point (fast: as fast or faster "
                             "than asyncio's cached responses in the runs of 2026-12-01)")
    parser.add_argument("--ceiling-runs", type=int, default=3,
                        help="repetitions of the paced-ceiling point (1,024 streams x 256 chunks "
                             "10 ms apart: chunks per client CPU-second; 0 skips it)")
    args = parser.parse_args()
    stub_cpu = pin_beside_stub()
    print(f"truth: TTFT {args.ttft * 1000:.0f} ms, ITL {args.itl * 1000:.0f} ms, "
          f"{args.output_len} chunks per response")
    print(f"{args.engine} stub engine; TTFT error vs nominal truth and vs the stub's measured one "
          "(ttft + its first-chunk lateness)")
    print(f"{'streams':>7} {'TTFT err ms':>11} {'vs measured':>11} {'ITL err ms':>10} "
          f"{'vs measured':>11} "
          f"{'stub late 1st/next ms (max)':>31} {'parse ms':>8} {'chunks/s':>9} "
          f"{'client CPU':>10} {'stub CPU':>8} {'steal':>5}")
    for c in (int(x) for x in args.concurrency.split(",")):
        f = measure(c, args.ttft, args.itl, args.output_len, args.rounds, stub_cpu, args.engine)
        util, sutil = _share(f.client_cpu_util), _share(f.stub_cpu_util)
        late = (f"{_ms(f.stub_first_late_s)}/{_ms(f.stub_next_late_s)} "
                f"({_ms(f.stub_first_late_max_s, False)}/{_ms(f.stub_next_late_max_s, False)})")
        print(f"{c:>7} {_ms(f.ttft_error_s):>11} {_ms(f.ttft_error_measured_s):>11} "
              f"{_ms(f.itl_error_s):>10} {_ms(f.itl_error_measured_s):>11} {late:>31} {_ms(f.stub_parse_delay_s, False):>8} "
              f"{f.chunks_per_s:>9,.0f} {util:>10} {sutil:>8} {_share(f.steal_share):>5}")
    if args.ceiling_runs:
        print("paced ceiling: 1,024 streams, 256 chunks 10 ms apart, 2 requests per stream")
        per_cpu: list[float] = []
        for run in range(args.ceiling_runs):
            f = measure(1024, args.ttft, args.itl, 256, 2, stub_cpu, args.engine)
            util = f.client_cpu_util or 0.0
            per_cpu.append(f.chunks_per_s / util if util else 0.0)
            print(f"  run {run + 1}: {f.chunks_per_s:,.0f} chunks/s at {util:.0%} of the client "
                  f"core = {per_cpu[-1]:,.0f} chunks per client CPU-second; ITL error "
                  f"{_ms(f.itl_error_s)} ms (vs measured {_ms(f.itl_error_measured_s)}), stub CPU "
                  f"{_share(f.stub_cpu_util)}, steal {_share(f.steal_share)}")
        print(f"  median {statistics.median(per_cpu):,.0f}, range {min(per_cpu):,.0f}–"
              f"{max(per_cpu):,.0f} chunks per client CPU-second")
    sat = measure(256, 0.0, 0.0, 256, 4, stub_cpu, args.saturation_engine)
    print(f"saturation ({args.saturation_engine} zero-delay stub, c=256, 256 chunks): mean TTFT {_ms(sat.ttft_mean_s, False)} ms, "
          f"{sat.chunks_per_s:,.0f} chunks/s")


if __name__ == "__main__":
    main()
