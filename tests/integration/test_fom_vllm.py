"""Offline throughput, sweeps and the FOM suite against real vLLM CPU on the tiny model.

Offline runs start vllm.LLM in a fresh worker process (~30–90 s each on this machine), so the
offline tests share as few engine starts as possible: two in all (one throughput run, one
sweep point); the other offline paths fail before an engine starts. The online tests use the
session ``vllm_server``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servemark.offline.runner import run_offline
from servemark.suites.csvformat import get_format, parse_csv
from servemark.suites.measurement import Measurement
from servemark.suites.point import Point, RunSettings
from servemark.suites.sweep import NullSweepProgress, ResultsFile, run_points

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SRC = Path(__file__).resolve().parents[2] / "src"
CPU_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
CPU_ENGINE = ["--enforce-eager", "--dtype", "bfloat16"]


def servemark(*args: str, cwd: Path, env_extra: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **CPU_ENV, **(env_extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "servemark", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=840)


def rows(path: Path) -> list[dict[str, str]]:
    return parse_csv(path.read_text())


# ---- offline ---------------------------------------------------------------------------------

def test_offline_throughput_exact_tokens_and_sane_numbers(tiny_model: Path, tmp_path: Path) -> None:
    """Also the TP axis for real: TP 2 on CPU is two workers bound to one core each."""
    import vllm

    b, i, o, k = 3, 24, 6, 3
    res = servemark("throughput", "--model", str(tiny_model), "--batch-size", str(b),
                    "--input-len", str(i), "--output-len", str(o), "--num-iters-warmup", "1",
                    "--num-iters", str(k), "--max-model-len", "128", *CPU_ENGINE,
                    "--max-num-seqs", "5",  # an engine argument servemark has no flag for
                    "--tensor-parallel-size", "2",
                    "--csv", "t.csv", "--json", cwd=tmp_path,
                    env_extra={"VLLM_CPU_OMP_THREADS_BIND": "0|1"})
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)["results"][0]
    assert doc["status"] == "ok" and doc["tokens_exact"]
    assert doc["input_tokens"] == [b * i] * k and doc["output_tokens"] == [b * o] * k
    lat = doc["latency"]
    assert len(doc["latencies_s"]) == k and 0 < lat["min"] <= lat["p10"] <= lat["p50"] \
        <= lat["p99"] <= lat["max"] < 60
    assert doc["throughput_tokens_per_s"] == pytest.approx(b * (i + o) / lat["mean"])
    assert doc["output_tokens_per_s"] == pytest.approx(b * o / lat["mean"])
    # tiny model: 2 layers, hidden 128 → FLOP-rate form from its config.json
    assert doc["flops_prefill"] == b * 2 * (6 * 128 * 128 * i + 128 * i * i)
    (row,) = rows(tmp_path / "t.csv")
    assert row["status"] == "ok" and row["tokens_exact"] == "True"
    assert (row["framework"], row["framework_version"]) == ("vllm", vllm.__version__)
    assert row["precision"] == "bfloat16" and row["max_model_len_tokens"] == "128"
    assert row["tensor_parallel"] == "2"
    assert row["hardware"] and row["hardware"] != "unknown"
    assert float(row["throughput_tokens_per_s"]) == pytest.approx(
        b * (i + o) / float(row["latency_mean_s"]), rel=1e-4)
    (log,) = (tmp_path / "t.csv.logs").iterdir()
    assert "'max_num_seqs': 5" in log.read_text()  # the pass-through reached vLLM


def test_offline_sweep_records_failure_continues_and_resumes(tiny_model: Path,
                                                             tmp_path: Path) -> None:
    args = ("sweep", "--model", str(tiny_model), "--input-lens", "64,16", "--batch-sizes", "2",
            "--tp-sizes", "1", "--max-model-len", "48", "--num-iters", "2", *CPU_ENGINE,
            "--csv", "s.csv", "--csv-format", "servemark")
    first = servemark(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    got = rows(tmp_path / "s.csv")
    assert [(r["input_len_tokens"], r["status"]) for r in got] == [("64", "failed"), ("16", "ok")]
    assert "longer than max-model-len 48" in got[0]["error"]
    assert got[1]["input_tokens_per_iter"] == "32" and got[1]["output_tokens_per_iter"] == "32"
    again = servemark(*args, cwd=tmp_path)  # everything done: no engine start
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 measured, 2 skipped" in again.stderr
    assert len(rows(tmp_path / "s.csv")) == 2


def test_failure_inside_the_worker_becomes_a_failed_point(tiny_model: Path,
                                                          tmp_path: Path) -> None:
    settings = RunSettings(mode="offline", model=str(tiny_model), engine_args={
        "enforce_eager": True, "no_such_engine_argument": 1}, env=CPU_ENV, timeout_s=600)
    m = run_offline(Point(8, 2, 1, max_model_len=64), settings, tmp_path / "w.log")
    assert m.status == "failed" and "no_such_engine_argument" in (m.error or "")


def test_a_crashed_worker_becomes_a_failed_point(tmp_path: Path) -> None:
    crash = tmp_path / "python"
    crash.write_text("#!/bin/sh\nkill -9 $$\n")
    crash.chmod(0o755)
    settings = RunSettings(mode="offline", model="any")
    m = run_offline(Point(8, 2, 1), settings, tmp_path / "w.log", python=str(crash))
    assert m.status == "failed" and "SIGKILL" in (m.error or "")


# ---- online ----------------------------------------------------------------------------------

def test_online_throughput_exact_lengths(vllm_server, tiny_model: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b, i, o, k = 4, 40, 12, 2
    res = servemark("throughput", "--base-url", vllm_server.base_url, "--batch-size", str(b),
                    "--input-len", str(i), "--output-len", str(o), "--num-iters", str(k),
                    "--tokenizer", str(tiny_model), "--csv", "o.csv", "--csv-format",
                    "model-name", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)["results"][0]
    assert doc["mode"] == "online" and doc["tokens_exact"], doc
    assert doc["input_tokens"] == [b * i] * k and doc["output_tokens"] == [b * o] * k
    assert doc["max_model_len"] == 2048
    (row,) = rows(tmp_path / "o.csv")
    assert tuple(row) == get_format("model-name").columns
    assert (row["Model Name"], row["batch size"], row["input length"], row["output length"],
            row["context_length"]) == ("tiny", "4", "40", "12", "2048")
    assert float(row["throughput"]) == pytest.approx(b * (i + o) / float(row["latency"]), rel=1e-3)


class StopAfter(NullSweepProgress):
    def __init__(self, n: int) -> None:
        self.finished = 0
        self.n = n

    def point_finished(self, index: int, total: int, m: Measurement) -> None:
        self.finished += 1
        if self.finished == self.n:
            raise KeyboardInterrupt


def test_online_sweep_interrupted_resumes_and_records_failures(vllm_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = RunSettings(mode="online", model="tiny", base_url=vllm_server.base_url,
                           num_iters_warmup=0, num_iters=1)
    # 3000 + 3000 tokens do not fit the server's 2048: the server refuses that point
    points = [Point(16, 8, 2), Point(3000, 3000, 1), Point(32, 8, 2), Point(16, 16, 3)]
    csv = tmp_path / "sweep.csv"
    with pytest.raises(KeyboardInterrupt):
        run_points(points, settings, ResultsFile(csv, get_format("hardware")), StopAfter(2))
    results = ResultsFile(csv, get_format("hardware"))
    done = results.done()
    assert len(done) == 2
    failed = next(m for m in done.values() if not m.ok)
    assert failed.point.input_len == 3000 and "request failed" in (failed.error or "")
    outcome = run_points(points, settings, results)
    assert (outcome.skipped, outcome.measured) == (2, 2)
    assert [m.ok for m in outcome.results] == [True, False, True, True]
    assert all(m.tokens_exact for m in outcome.results if m.ok)
    got = rows(csv)  # site format: measured points only, each once
    assert [r["Input Output Length"] for r in got] == ["16/8", "32/8", "16/16"]
    assert tuple(got[0]) == get_format("hardware").columns
    assert len(results.done()) == 4


def test_fom_suite_end_to_end_online(vllm_server, tiny_model: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = servemark("fom", "--base-url", vllm_server.base_url, "--batch-size", "2",
                    "--fom1-input-len", "96", "--fom1-output-len", "1",
                    "--fom2-input-len", "16", "--fom2-output-len", "48",
                    "--fom3-input-len", "64", "--fom3-output-len", "64",
                    "--num-iters-warmup", "0", "--num-iters", "2",
                    "--model-config", str(tiny_model), "--tokenizer", str(tiny_model),
                    "--csv", "fom.csv", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    scen = {r["point"]["scenario"]: r for r in doc["results"]}
    assert list(scen) == ["FOM1", "FOM2", "FOM3"]
    assert all(r["status"] == "ok" and r["tokens_exact"] for r in scen.values())
    assert doc["total_throughput_tokens_per_s"] == pytest.approx(
        sum(r["throughput_tokens_per_s"] for r in scen.values()))
    assert doc["total_flop_rate_per_s"] == pytest.approx(
        sum(r["flop_rate_per_s"] for r in scen.values()))
    assert "total FOM" in res.stderr
    got = rows(tmp_path / "fom.csv")
    assert [r["scenario"] for r in got] == ["FOM1", "FOM2", "FOM3"]
    assert [(r["input_len_tokens"], r["output_len_tokens"]) for r in got] == [
        ("96", "1"), ("16", "48"), ("64", "64")]
    assert all(float(r["flop_rate_tflop_per_s"]) > 0 for r in got)


def test_sigterm_stops_the_sweep_and_its_worker(tiny_model: Path, tmp_path: Path) -> None:
    """A job's time limit (SIGTERM) must not leave a vLLM worker holding the machine."""
    import signal
    import time

    import psutil

    env = {**os.environ, **CPU_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "servemark", "sweep", "--model", str(tiny_model), "--input-lens",
         "16", "--batch-sizes", "1", "--tp-sizes", "1", "--max-model-len", "64", *CPU_ENGINE,
         "--csv", "s.csv"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and not workers:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if "servemark.offline.worker" in " ".join(p.cmdline())]
            time.sleep(0.2)
        assert workers, "the worker never started"
        time.sleep(3)  # let it get into vLLM's start-up
        family = workers[0].children(recursive=True) + workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"left running: {[p.pid for p in alive]}"
        journal = tmp_path / "s.csv.points.jsonl"
        assert not journal.exists() or journal.read_text() == ""  # nothing done: re-run measures it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
