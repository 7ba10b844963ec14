"""How fast can this machine's client go? Measured against the built-in zero-delay stub.

The stub runs in its own process (pinned to the last core where taskset exists); every figure is
what servemark's client sustained, so a real run whose throughput approaches it is client-bound.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from servemark.api import bench
from servemark.spec import BenchConfig
from servemark.stub.process import StubProcess


@dataclass(frozen=True)
class Ceiling:
    concurrency: int
    workers: int
    requests_per_s: float
    output_tokens_per_s: float
    client_cpu_util: float | None


def calibrate(concurrency: list[int], num_requests: int = 2000, output_len: int = 256,
              workers: int = 1) -> list[Ceiling]:
    """Client ceilings at each concurrency (128-token prompts, one token per SSE chunk)."""
    ncpu = os.cpu_count() or 1
    out: list[Ceiling] = []
    with StubProcess(cpu=ncpu - 1 if ncpu > 1 else None) as stub, \
            tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(concurrency):
            cfg = BenchConfig(base_url=stub.base_url, concurrency=[c], num_requests=num_requests,
                              input_len=128, output_len=output_len, workers=workers,
                              output_dir=Path(tmp) / f"run{i}", results_root=Path(tmp))
            p = bench(cfg).points[0]
            out.append(Ceiling(c, workers, p.requests_per_s or 0.0, p.output_tokens_per_s or 0.0,
                               p.fidelity.client_cpu_util if p.fidelity else None))
    return out
