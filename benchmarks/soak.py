"""Soak: `servemark bench` at high concurrency against the paced stub for a while; samples the
client's resident memory and open file descriptors twice a second and prints how they evolve.

A benchmark (figures), used with a short duration by tests/reliability/test_soak.py:

    python benchmarks/soak.py --concurrency 1024 --duration 600
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import psutil  # noqa: E402

from servemark.stub.process import StubProcess  # noqa: E402

MIB = 1 << 20


@dataclass
class SoakResult:
    concurrency: int
    duration_s: float
    completed: int
    failed: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss, fds)

    def _rss_between(self, lo: float, hi: float) -> float:
        t_end = self.samples[-1][0]
        vals = [rss for t, rss, _ in self.samples if lo * t_end <= t <= hi * t_end]
        return statistics.median(vals) / MIB

    @property
    def rss_warm_mib(self) -> float:
        """Resident memory once every stream is open (median over 20-30 % of the run)."""
        return self._rss_between(0.2, 0.3)

    @property
    def rss_end_mib(self) -> float:
        """Median over the last 10 % of the run."""
        return self._rss_between(0.9, 1.0)

    @property
    def rss_max_mib(self) -> float:
        return max(rss for _, rss, _ in self.samples) / MIB

    @property
    def fds_max(self) -> int:
        return max(fds for _, _, fds in self.samples)

    @property
    def growth_per_1k_requests_kib(self) -> float:
        """RSS growth from warm to end per 1000 completed requests (records kept in memory
        for the summary, say), in KiB."""
        done = max(self.completed * 0.65, 1)  # requests completed between the two windows
        return (self.rss_end_mib - self.rss_warm_mib) * 1024 / done * 1000

    def lines(self) -> list[str]:
        return [
            f"concurrency {self.concurrency}, {self.duration_s:g} s: {self.completed} completed, "
            f"{self.failed} failed",
            f"client RSS: warm {self.rss_warm_mib:.1f} MiB, end {self.rss_end_mib:.1f} MiB, "
            f"max {self.rss_max_mib:.1f} MiB "
            f"({self.growth_per_1k_requests_kib:+.1f} KiB per 1000 requests)",
            f"client open fds: max {self.fds_max} (concurrency {self.concurrency})",
        ]


def soak(concurrency: int, duration_s: float, output_len: int = 32, ttft_s: float = 0.05,
         itl_s: float = 0.02, out_dir: Path | None = None) -> SoakResult:
    """Run the soak and return the samples; the stub and the client are stopped on return."""
    out = out_dir or Path(tempfile.mkdtemp(prefix="servemark-soak-"))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    with StubProcess("--ttft", str(ttft_s), "--itl", str(itl_s)) as stub:
        cmd = [sys.executable, "-m", "servemark", "bench", "--base-url", stub.base_url,
               "--concurrency", str(concurrency), "--duration", str(duration_s),
               "--input-len", "16", "--output-len", str(output_len), "--no-server-metrics",
               "--read-timeout", "60", "--output-dir", str(out / "run")]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        ps = psutil.Process(proc.pid)
        samples: list[tuple[float, int, int]] = []
        t0 = time.monotonic()
        try:
            while proc.poll() is None:
                try:
                    samples.append((time.monotonic() - t0, ps.memory_info().rss, ps.num_fds()))
                except psutil.Error:
                    break
                time.sleep(0.5)
            _, stderr = proc.communicate(timeout=duration_s + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"servemark bench failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    point = json.loads((out / "run" / "summary.json").read_text())["points"][0]
    return SoakResult(concurrency, duration_s, point["completed"], point["failed"], samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=1024)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--output-len", type=int, default=32)
    args = parser.parse_args()
    result = soak(args.concurrency, args.duration, args.output_len)
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
