"""nsys: command construction, cuda_gpu_kern_sum CSV parsing, all-reduce share, missing nsys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from servemark.errors import ConfigError, DependencyError
from servemark.profile.nsys import (
    NsysOptions,
    classify,
    kernel_report,
    parse_kern_sum_csv,
    profile_command,
    require_nsys,
    stats_command,
    vllm_server_args,
)

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "nsys"
SRC = Path(__file__).resolve().parents[3] / "src"


def test_profile_command_api_capture() -> None:
    opts = NsysOptions(Path("/r/tp2"))
    cmd = profile_command(opts, ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"])
    assert cmd[:2] == ["nsys", "profile"]
    for flag in ("--trace=cuda,nvtx", "--cuda-graph-trace=node", "--trace-fork-before-exec=true",
                 "--capture-range=cudaProfilerApi", "--capture-range-end=stop", "--output=/r/tp2"):
        assert flag in cmd
    assert cmd[-5:] == ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"]
    assert vllm_server_args(opts) == ["--profiler-config", '{"profiler": "cuda"}']


def test_profile_command_time_capture() -> None:
    opts = NsysOptions(Path("r"), capture="time", delay_s=120, duration_s=5)
    cmd = profile_command(opts, ["srv"])
    assert "--delay=120" in cmd and "--duration=5" in cmd
    assert not any(c.startswith("--capture-range") for c in cmd)
    assert vllm_server_args(opts) == []
    with pytest.raises(ConfigError):
        NsysOptions(Path("r"), capture="time")
    with pytest.raises(ConfigError):
        NsysOptions(Path("r"), capture="sometimes")
    assert stats_command(Path("a.nsys-rep"))[:5] == ["nsys", "stats", "--report", "cuda_gpu_kern_sum", "--format"]


def test_tp1_has_no_allreduce() -> None:
    kernels = parse_kern_sum_csv((FIX / "tp1_kern_sum.csv").read_text())  # preamble lines skipped
    assert len(kernels) == 5
    assert kernels[0].name.startswith("sm90_xmma_gemm") and kernels[0].share == pytest.approx(0.62)
    r = kernel_report("TP=1", kernels, top_k=3)
    assert [k.share for k in r.top] == pytest.approx([0.62, 0.20, 0.10])
    assert r.allreduce_share == 0 and r.allreduce_kernels == []


def test_tp2_allreduce_share_counts_nccl_and_custom() -> None:
    kernels = parse_kern_sum_csv((FIX / "tp2_kern_sum.csv").read_text())  # thousands separators
    r = kernel_report("TP=2", kernels, top_k=4)
    assert r.total_ns == pytest.approx(1_000_000_000)
    assert r.allreduce_share == pytest.approx(0.35)  # custom 25 % + NCCL all-reduce 10 %
    assert r.allreduce_by_kind == pytest.approx({"custom": 0.25, "nccl": 0.10})
    gather = next(k for k in kernels if "AllGather" in k.name)
    assert gather.comm == "nccl-other"  # a collective, but not an all-reduce
    assert [k.instances for k in r.top][:2] == [32000, 64000]


def test_legacy_columns_and_old_nccl_names() -> None:
    kernels = parse_kern_sum_csv((FIX / "tp4_legacy_kern_sum.csv").read_text())
    r = kernel_report("TP=4", kernels)
    assert r.allreduce_share == pytest.approx(1.0)
    assert classify("ncclKernel_AllReduce_RING_LL_Sum_half(ncclDevComm *, unsigned long, ncclWork *)") == "nccl"
    assert classify("void vllm::cross_device_reduce_2stage<half, (int)4>(...)") == "custom"
    assert classify("void vllm::rms_norm_kernel<c10::BFloat16>(...)") is None


def test_unusable_csv_is_a_clear_error() -> None:
    from servemark.errors import ResultsError

    with pytest.raises(ResultsError, match="no cuda_gpu_kern_sum table"):
        parse_kern_sum_csv("SKIPPED: report does not contain CUDA kernel data.\n")


def test_missing_nsys_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match="Nsight Systems"):
        require_nsys("nsys-does-not-exist")
    env = dict(os.environ, PYTHONPATH=str(SRC), PATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "servemark", "profile", "nsys", "--model", "m",
                           "--tp", "1,2"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert "nsys" in proc.stderr and "Traceback" not in proc.stderr


def test_nsys_stats_cli_on_csv_files() -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "servemark", "profile", "nsys-stats",
                           str(FIX / "tp1_kern_sum.csv"), str(FIX / "tp2_kern_sum.csv"), "--top-k", "3"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "all-reduce 0.0%" in proc.stdout and "all-reduce 35.0%" in proc.stdout
    assert "custom 25.0%" in proc.stdout and "nccl 10.0%" in proc.stdout
