"""Client capacity: requests/s and streamed tokens/s one servemark client process sustains.

The zero-delay stub runs in its own process pinned to the last core; the client is pinned to core
0. 128-token prompts, 256-token responses, one token per SSE chunk, closed loop at concurrency 64
and 256, for each HTTP client. Prints figures; it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from servemark.client.fasthttp import kernel_timestamps_enabled  # noqa: E402
from servemark.load.calibrate import calibrate  # noqa: E402
from servemark.load.eventloop import loop_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="64,256")
    parser.add_argument("--num-requests", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1 and args.workers == 1:
        os.sched_setaffinity(0, {0})
    print(f"event loop: {loop_name()}; kernel receive timestamps: "
          f"{'on' if kernel_timestamps_enabled() else 'off'}")
    print(f"{'concurrency':>11} {'workers':>7} {'req/s':>9} {'tokens/s':>11} {'client CPU':>10}")
    for c in calibrate([int(x) for x in args.concurrency.split(",")], args.num_requests,
                       workers=args.workers):
        util = "–" if c.client_cpu_util is None else f"{c.client_cpu_util:.0%}"
        print(f"{c.concurrency:>11} {c.workers:>7} {c.requests_per_s:>9.1f} "
              f"{c.output_tokens_per_s:>11,.0f} {util:>10}")


if __name__ == "__main__":
    main()
