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


def cmdlines(skip: set[int]) -> bytes:
    """Every process's command line on this machine, as anyone on it can read them (but those
    of ``skip``: the commands this test typed, which hold the secrets as a user would)."""
    data = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) not in skip:
            try:
                data.append((p / "cmdline").read_bytes())
            except OSError:
                continue
    return b"\n".join(data)


def test_no_secret_in_process_command_lines(stub_server, tmp_path: Path) -> None:
    """vLLM's --api-key/--hf-token reach it through its environment; client worker processes
    get the key through a pipe. Nothing on any command line (ps, /proc/PID/cmdline)."""
    import json
    import time

    from tests.deploy_helpers import cli_env, fake_vllm_python, leftovers, servemark, server_pids

    env = cli_env(tmp_path, HF_TOKEN=SECRETS["HF_TOKEN"], OPENAI_API_KEY=SECRETS["OPENAI_API_KEY"])
    serve = servemark("serve", "fake-model", "--python", str(fake_vllm_python(tmp_path)),
                      "--device", "cpu", "--served-model-name", "stub",
                      "--output-dir", str(tmp_path / "serve"), "--", "--api-key", SECRETS["flag"],
                      f"--hf-token={SECRETS['spec']}", env=env)
    try:
        url = serve.stdout.readline().strip()
        assert url.startswith("http://"), serve.stderr.read()
        (pid,) = server_pids(tmp_path / "serve")
        bench = servemark("bench", "--base-url", stub_server("--itl", "0.05").base_url,
                          "--workers", "2", "--concurrency", "4", "--num-requests", "16",
                          "--input-len", "8", "--output-len", "20", "--no-server-metrics",
                          "--output-dir", str(tmp_path / "bench"), env=env)
        time.sleep(3)  # workers are up and streaming
        assert bench.poll() is None
        assert leaks(cmdlines({serve.pid})) == []
        # the key still reaches the server, through its environment
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"VLLM_API_KEY={SECRETS['flag']}".encode() in environ
        assert f"HF_TOKEN={SECRETS['spec']}".encode() in environ
        assert bench.wait(120) == 0
        doc = json.loads((tmp_path / "serve" / "deployment.json").read_text())
        assert leaks(json.dumps(doc)) == []
    finally:
        serve.send_signal(2)
        serve.wait(60)
    assert leftovers([pid]) == []


def test_secret_flags_move_to_the_environment() -> None:
    from servemark.deploy.local import secrets_to_env

    assert secrets_to_env(["--api-key", "k1", "--port", "1", "--hf-token=t"]) == (
        ["--port", "1"], {"VLLM_API_KEY": "k1", "HF_TOKEN": "t"})
    # several keys cannot share one variable: left as given
    two = ["--api-key", "a", "--api-key", "b"]
    assert secrets_to_env(two) == (two, {})
    assert secrets_to_env(["--api-key"]) == (["--api-key"], {})
