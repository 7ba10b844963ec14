"""Nsight Systems around a vLLM server: the ``nsys profile`` command line, ``nsys stats``
kernel summaries (``cuda_gpu_kern_sum`` as CSV), and the all-reduce share per configuration.

Flags that work for vLLM: trace CUDA and NVTX (``--trace=cuda,nvtx``), trace the kernels inside
CUDA graphs one by one (``--cuda-graph-trace=node``; the default ``graph`` shows a graph launch
as one opaque range), follow the worker processes vLLM spawns (``--trace-fork-before-exec=true``),
and record only the measured window: either ``--capture-range=cudaProfilerApi`` with vLLM's
``--profiler-config '{"profiler": "cuda"}'`` (the server's /start_profile and /stop_profile
call cudaProfilerStart/Stop in every worker, vLLM 0.32 ``vllm/profiler/wrapper.py``), or a
fixed ``--delay``/``--duration`` in seconds.

The CSV columns of ``cuda_gpu_kern_sum`` ("Time (%)", "Total Time (ns)", "Instances",
"Avg (ns)", "Med (ns)", "Min (ns)", "Max (ns)", "StdDev (ns)", "Name") are the ones nsys prints,
e.g. in https://github.com/vllm-project/vllm/issues/2485; older nsys versions add GridXYZ and
BlockXYZ columns, which are ignored.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servemark.errors import ConfigError, DependencyError, ResultsError

NSYS_HINT = ("install NVIDIA Nsight Systems (the `nsys` command, part of the CUDA toolkit or "
             "https://developer.nvidia.com/nsight-systems) and put it on PATH")

# NCCL collectives: ncclKernel_AllReduce_RING_LL_Sum_half (NCCL ≤ 2.18) and
# ncclDevKernel_AllReduce_Sum_bf16_RING_LL (NCCL ≥ 2.19), as seen in
# https://github.com/vllm-project/vllm/issues/2485 and https://github.com/NVIDIA/Fuser/issues/4627.
# vLLM's custom all-reduce: vllm::cross_device_reduce_1stage / _2stage (csrc/custom_all_reduce.cuh);
# symmetric-memory and FlashInfer fused all-reduce kernels carry "allreduce" in their names.
ALLREDUCE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("nccl", re.compile(r"nccl(Dev)?Kernel_AllReduce", re.IGNORECASE)),
    ("custom", re.compile(r"cross_device_reduce_(1|2)stage")),
    ("custom", re.compile(r"all_?reduce", re.IGNORECASE)),
)
OTHER_COMM = re.compile(r"nccl(Dev)?Kernel_", re.IGNORECASE)  # other NCCL collectives


@dataclass(frozen=True)
class NsysOptions:
    """How the server is wrapped. ``capture="api"`` records between /start_profile and
    /stop_profile; ``capture="time"`` records ``duration_s`` seconds after ``delay_s``."""

    output: Path
    capture: str = "api"
    delay_s: float | None = None
    duration_s: float | None = None
    trace: str = "cuda,nvtx"
    cuda_graph_trace: str = "node"
    nsys: str = "nsys"

    def __post_init__(self) -> None:
        if self.capture not in ("api", "time"):
            raise ConfigError(f"unknown capture mode {self.capture!r}", "use api or time")
        if self.capture == "time" and self.duration_s is None:
            raise ConfigError("--capture time needs a duration", "pass --nsys-duration SECONDS")


def profile_command(opts: NsysOptions, server_cmd: Sequence[str]) -> list[str]:
    """``nsys profile [flags] -- <server command>``."""
    cmd = [opts.nsys, "profile", f"--trace={opts.trace}", f"--cuda-graph-trace={opts.cuda_graph_trace}",
           "--trace-fork-before-exec=true", "--force-overwrite=true",
           f"--output={opts.output}"]
    if opts.capture == "api":
        cmd += ["--capture-range=cudaProfilerApi", "--capture-range-end=stop"]
    else:
        if opts.delay_s:
            cmd.append(f"--delay={opts.delay_s:g}")
        cmd.append(f"--duration={opts.duration_s:g}")
    return [*cmd, *server_cmd]


def vllm_server_args(opts: NsysOptions) -> list[str]:
    """Server flags that make /start_profile and /stop_profile drive the CUDA profiler API."""
    return ["--profiler-config", '{"profiler": "cuda"}'] if opts.capture == "api" else []


def stats_command(report: Path, nsys: str = "nsys") -> list[str]:
    return [nsys, "stats", "--report", "cuda_gpu_kern_sum", "--format", "csv",
            "--force-export=true", "--output", "-", str(report)]


def require_nsys(nsys: str = "nsys") -> str:
    path = shutil.which(nsys)
    if path is None:
        raise DependencyError(f"`{nsys}` (Nsight Systems) is not on PATH", NSYS_HINT)
    return path


@dataclass
class Kernel:
    name: str
    total_ns: float
    instances: int
    avg_ns: float | None = None
    share: float = 0.0  # of all kernel time in the report
    comm: str | None = None  # "nccl" | "custom" for all-reduce kernels, "nccl-other" for others


def classify(name: str) -> str | None:
    for kind, pattern in ALLREDUCE_PATTERNS:
        if pattern.search(name):
            return kind
    return "nccl-other" if OTHER_COMM.search(name) else None


def _number(text: str) -> float:
    return float(text.replace(",", "").strip() or 0)


def parse_kern_sum_csv(text: str) -> list[Kernel]:
    """Rows of ``nsys stats --report cuda_gpu_kern_sum --format csv`` (any preamble lines
    before the header, as nsys prints when it exports the SQLite file first, are skipped)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if "Total Time" in line and "Name" in line), None)
    if start is None:
        raise ResultsError("no cuda_gpu_kern_sum table in the nsys stats output",
                           "was CUDA traced (--trace=cuda) and did the capture range record kernels?")
    reader = csv.DictReader(io.StringIO("\n".join(lines[start:])))
    fields = {f.strip(): f for f in reader.fieldnames or []}
    total_col = fields.get("Total Time (ns)")
    if total_col is None or "Name" not in fields:
        raise ResultsError("unexpected cuda_gpu_kern_sum columns: " + ", ".join(fields),
                           "expected 'Total Time (ns)' and 'Name' (nsys ≥ 2021.x)")
    kernels = []
    for row in reader:
        name = (row.get(fields["Name"]) or "").strip()
        if not name:
            continue
        avg = row.get(fields["Avg (ns)"]) if "Avg (ns)" in fields else None
        kernels.append(Kernel(name, _number(row[total_col]),
                              int(_number(row.get(fields.get("Instances", ""), "") or "0")),
                              _number(avg) if avg else None, comm=classify(name)))
    total = sum(k.total_ns for k in kernels)
    for k in kernels:
        k.share = k.total_ns / total if total else 0.0
    kernels.sort(key=lambda k: k.total_ns, reverse=True)
    return kernels


@dataclass
class KernelReport:
    """One configuration: the top kernels and how much GPU time all-reduce takes."""

    label: str
    total_ns: float
    top: list[Kernel]
    allreduce_ns: float
    allreduce_share: float
    allreduce_by_kind: dict[str, float] = field(default_factory=dict)
    allreduce_kernels: list[Kernel] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self)}


def kernel_report(label: str, kernels: Sequence[Kernel], top_k: int = 10) -> KernelReport:
    total = sum(k.total_ns for k in kernels)
    ar = [k for k in kernels if k.comm in ("nccl", "custom")]
    by_kind: dict[str, float] = {}
    for k in ar:
        by_kind[k.comm or ""] = by_kind.get(k.comm or "", 0.0) + k.total_ns
    ar_ns = sum(k.total_ns for k in ar)
    return KernelReport(label, total, list(kernels[:top_k]), ar_ns, ar_ns / total if total else 0.0,
                        {kind: ns / total for kind, ns in by_kind.items()} if total else {}, ar)


def run_stats(report: Path, nsys: str = "nsys") -> list[Kernel]:
    """Run ``nsys stats`` on a report file and parse the kernel summary."""
    require_nsys(nsys)
    if not report.exists():
        raise ResultsError(f"{report} does not exist", "did nsys write the report?")
    proc = subprocess.run(stats_command(report, nsys), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ResultsError(f"nsys stats failed ({proc.returncode}): {proc.stderr.strip()[-300:]}",
                           "run the printed command by hand to see the whole message")
    return parse_kern_sum_csv(proc.stdout)
