"""Secrets: planted HF_TOKEN, OPENAI_API_KEY, ``--api-key`` and a spec's ``api_key`` appear in no
file of any run directory or report, and in no captured output of bench, run and report —
including the failure paths (server errors, a fatal error, a resumed run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import SRC

SECRETS = {
    "HF_TOKEN": "hf_PlantedTokenValue0123456789",
    "OPENAI_API_KEY": "sk-planted-env-key-0123456789",
    "flag": "sk-planted-flag-key-9876543210",
    "spec": "sk-planted-spec-key-5555555555",
}


def cli(*args: str, cwd: Path) -> tuple[int, str]:
    env = dict(os.environ, COLUMNS="200", HF_TOKEN=SECRETS["HF_TOKEN"],
               OPENAI_API_KEY=SECRETS["OPENAI_API_KEY"])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "servemark", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, value in SECRETS.items() if value.encode() in data]


def test_no_secret_in_any_file_or_output(stub_server, tmp_path: Path) -> None:
    stub = stub_server("--fault", "http500", "--fault-every", "3")
    outputs: list[tuple[str, str]] = []
    common = ["--concurrency", "2", "--num-requests", "6", "--input-len", "8", "--output-len", "4",
              "--no-server-metrics", "--results-root", str(tmp_path / "results")]
    # the key from the flag, and from OPENAI_API_KEY alone; --json prints the whole document
    rc, out = cli("bench", "--base-url", stub.base_url, "--api-key", SECRETS["flag"],
                  "--output-dir", str(tmp_path / "flag"), "--json", *common, cwd=tmp_path)
    assert rc == 0, out
    outputs.append(("bench --api-key", out))
    rc, out = cli("bench", "--base-url", stub.base_url, f"--api-key={SECRETS['flag']}",
                  "--output-dir", str(tmp_path / "env"), "--metrics-profile", "vllm", *common,
                  cwd=tmp_path)
    assert rc == 0, out
    outputs.append(("bench (env key)", out))
    # a fatal error path: the message must not echo the key
    rc, out = cli("bench", "--base-url", "http://127.0.0.1:9", "--api-key", SECRETS["flag"],
                  "--output-dir", str(tmp_path / "bad"), *common, cwd=tmp_path)
    assert rc != 0
    outputs.append(("bench unreachable", out))
    # a resumed run (the key is passed again; never read from the run directory)
    summary = tmp_path / "flag" / "summary.json"
    summary.write_text(summary.read_text().replace('"complete"', '"interrupted"', 1))
    rc, out = cli("bench", "--resume", str(tmp_path / "flag"), "--api-key", SECRETS["flag"],
                  cwd=tmp_path)
    assert rc == 0, out
    outputs.append(("bench --resume", out))
    # an experiment spec with the key inside it
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump({"name": "secret-check", "bench": {
        "base_url": stub.base_url, "api_key": SECRETS["spec"], "concurrency": [2],
        "num_requests": 4, "input_len": 8, "output_len": 4, "server_metrics": False,
        "output_dir": str(tmp_path / "spec-run")}}))
    rc, out = cli("run", str(spec), "--json", cwd=tmp_path)
    assert rc == 0, out
    outputs.append(("run", out))
    rc, out = cli("report", str(tmp_path / "flag"), str(tmp_path / "spec-run"),
                  "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert rc == 0, out
    outputs.append(("report", out))

    for what, text in outputs:
        assert not leaks(text), f"{what} printed {leaks(text)}"
    scanned = 0
    for root in ("flag", "env", "bad", "spec-run", "report", "results"):
        base = tmp_path / root
        for f in (base.rglob("*") if base.exists() else []):
            if f.is_file():
                scanned += 1
                assert not leaks(f.read_bytes()), f"{f} holds {leaks(f.read_bytes())}"
    assert scanned >= 10
