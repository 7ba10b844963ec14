"""Client capacity: requests/s and streamed tokens/s one servemark client process sustains.

Starts the zero-delay stub in its own process (pinned to the last core with taskset when there
is one), then runs the servemark client (pinned to core 0) against it at concurrency 64 and 256
with 128-token prompts and 256-token responses, one token per SSE chunk. Prints figures; it is a
benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import servemark  # noqa: E402
from servemark.deploy.local import free_port  # noqa: E402


def start_stub(port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "servemark.stub", "--port", str(port)]
    ncpu = os.cpu_count() or 1
    if shutil.which("taskset") and ncpu > 1:
        cmd = ["taskset", "-c", str(ncpu - 1), *cmd]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("stub did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="64,256")
    parser.add_argument("--num-requests", type=int, default=2500)
    parser.add_argument("--output-len", type=int, default=256)
    parser.add_argument("--http-client", default="fast,aiohttp", help="clients to compare")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    port = free_port()
    stub = start_stub(port)
    try:
        print(f"{'client':>8} {'concurrency':>11} {'req/s':>9} {'tokens/s':>11} {'client CPU s':>12} "
              f"{'tokens/CPU-s':>13}")
        runs = [(h, int(c)) for h in args.http_client.split(",") for c in args.concurrency.split(",")]
        for client, c in runs:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = servemark.BenchConfig(
                    base_url=f"http://127.0.0.1:{port}", concurrency=[c],
                    num_requests=args.num_requests, input_len=128, output_len=args.output_len,
                    output_dir=Path(tmp) / "run", http_client=client)
                cpu0 = time.process_time()
                result = servemark.bench(cfg)
                cpu = time.process_time() - cpu0
            p = result.points[0]
            assert p.completed == args.num_requests, p.errors_by_kind
            tokens = p.output_tokens_total
            print(f"{client:>8} {c:>11} {p.requests_per_s:>9.1f} {p.output_tokens_per_s:>11,.0f} {cpu:>12.2f} "
                  f"{tokens / cpu:>13,.0f}")
    finally:
        stub.terminate()
        stub.wait()


if __name__ == "__main__":
    main()
