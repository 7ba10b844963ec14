"""Observe and interact against the real vLLM CPU server: /metrics sampled during a bench (the
server's token counters must equal the client's totals), safety verdicts per request, the torch
profiler window, and the chat client driven as a person would (flag, pipe, terminal)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servemark.api import bench
from servemark.profile.sampler import SERVER_METRICS
from servemark.spec import make_config
from tests.conftest import SERVED_NAME, SRC, need

pytestmark = pytest.mark.vllm


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="200")


def test_bench_samples_server_metrics_and_records_safety(vllm_server, tmp_path: Path) -> None:
    config = make_config(base_url=vllm_server.base_url, concurrency=[2, 4], num_requests=8,
                         input_len=32, output_len=64, results_root=tmp_path,
                         metrics_interval_s=0.1, safety_check="local", safety_on=("prompt", "output"))
    result = bench(config)
    lines = [json.loads(x) for x in (result.run_dir / SERVER_METRICS).read_text().splitlines()]
    samples = [x for x in lines if "values" in x]
    assert {x["load_point"] for x in samples} == {"c=2", "c=4"}
    assert all("requests_running" in x["values"] and "kv_cache_usage" in x["values"] for x in samples)
    assert all(x["names"]["kv_cache_usage"] == "vllm:kv_cache_usage_perc" for x in samples)
    points = result.document["server_metrics"]["points"]
    assert [p["load_point"] for p in points] == ["c=2", "c=4"]
    for p, summary in zip(points, result.points, strict=True):
        # nothing else talks to the session server: the counters' deltas are exactly our requests
        assert p["prompt_tokens"]["server"] == summary.input_tokens_total == 8 * 32
        assert p["generation_tokens"]["server"] == summary.output_tokens_total == 8 * 64
        assert p["prompt_tokens"]["diff"] == 0 and p["generation_tokens"]["diff"] == 0
        assert p["samples"] >= 2
        assert p["server_ttft_p50_s"] is not None and p["server_ttft_p50_s"] > 0
    assert max(p["peak_running"] for p in points) >= 1  # the server saw our requests running
    safety = result.document["safety"]["points"]
    assert safety["c=2"]["checked"] == 16 and safety["c=4"]["checked"] == 16
    verdicts = (result.run_dir / "safety.jsonl").read_text().splitlines()
    assert len(verdicts) == 32

    need(importlib.util.find_spec("matplotlib") is not None, "matplotlib not installed")
    from servemark.report.build import make_report

    files = make_report([result.run_dir])
    html = files.html.read_text()
    assert 'id="server"' in html and "fig-server_timeline" in html
    assert (files.out_dir / "server_timeline.svg").exists()


def test_no_server_metrics_flag_turns_sampling_off(vllm_server, tmp_path: Path) -> None:
    config = make_config(base_url=vllm_server.base_url, concurrency=[1], num_requests=2,
                         input_len=16, output_len=4, results_root=tmp_path, server_metrics=False)
    result = bench(config)
    assert not (result.run_dir / SERVER_METRICS).exists()
    assert "server_metrics" not in result.document


@pytest.mark.slow
def test_torch_profiler_window(vllm_server, torch_trace_dir: Path, tmp_path: Path) -> None:
    from servemark.profile.torchprof import run_torch_profile

    config = make_config(base_url=vllm_server.base_url, concurrency=[2], duration_s=4,
                         input_len=32, output_len=32, results_root=tmp_path)
    result = asyncio.run(run_torch_profile(config, torch_trace_dir, 1.0, 1.0))
    worker = [t for t in result.traces if t.ops]
    assert worker, [t.path for t in result.traces]
    names = {o.name for t in worker for o in t.top(30)}
    # the model's matmuls ran in the window: torch's, or one of vLLM's CPU GEMM kernels (prepacked
    # weights where the CPU has AMX; oneDNN's, seen on an AMD EPYC VM)
    assert names & {"aten::mm", "aten::linear", "aten::addmm", "_C::weight_packed_linear",
                    "_C::onednn_mm"}, names
    for t in worker:
        assert t.span_us > 0
        assert all(o.self_us <= o.total_us + 1e-6 for o in t.ops)
    saved = json.loads((result.run_dir / "profile_torch.json").read_text())
    assert saved["traces"] and saved["window_s"] >= 1.0
    assert result.run_dir.joinpath("requests.jsonl").exists()


def test_chat_prompt_and_piped_stdin(vllm_server, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "servemark", "chat", "--base-url", vllm_server.base_url,
            "--max-tokens", "8", "--temperature", "0"]
    one = subprocess.run([*base, "--prompt", "Hello there"], capture_output=True, text=True,
                         env=_env(), timeout=120)
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip()
    assert "TTFT" in one.stderr and "8 tokens" in one.stderr and "tokens/s" in one.stderr

    saved = tmp_path / "conv.json"
    script = f"hi\n/system be brief\n/save {saved}\n/reset\n/load {saved}\nand more?\n/exit\nnot sent\n"
    piped = subprocess.run(base, input=script, capture_output=True, text=True, env=_env(), timeout=180)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr.count("TTFT") == 2  # "not sent" after /exit was not sent
    data = json.loads(saved.read_text())
    assert data["system"] == "be brief" and data["model"] == SERVED_NAME
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert "loaded 2 messages" in piped.stderr


def test_chat_in_a_terminal(vllm_server) -> None:
    """Interactive mode as a person sees it: a prompt, a streamed answer, the stats line."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "servemark", "chat", "--base-url",
                             vllm_server.base_url, "--max-tokens", "6"],
                            stdin=slave, stdout=slave, stderr=slave, env=_env(), close_fds=True)
    os.close(slave)
    seen = b""

    def read_until(token: bytes, timeout: float = 120.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while token not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert token in seen, seen.decode(errors="replace")[-500:]

    try:
        read_until(b"you> ")
        os.write(master, b"Tell me a story\n")
        read_until(b"tokens/s")
        read_until(b"you> ")
        os.write(master, b"/exit\n")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_chat_completions_applies_the_template_locally(vllm_server, tiny_model: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "servemark", "chat", "--base-url",
                           vllm_server.base_url, "--completions", "--tokenizer", str(tiny_model),
                           "--prompt", "Hi", "--max-tokens", "5"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "5 tokens" in proc.stderr
    missing = subprocess.run([sys.executable, "-m", "servemark", "chat", "--base-url",
                              vllm_server.base_url, "--completions", "--prompt", "Hi"],
                             capture_output=True, text=True, env=_env(), timeout=60)
    assert missing.returncode == 2 and "--tokenizer" in missing.stderr
