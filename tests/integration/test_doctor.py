"""``servemark doctor`` as a user runs it: against the real vLLM CPU server and the tiny model
(all ok), and with pieces missing — vLLM blocked from importing (a meta-path finder installed by
a sitecustomize on PYTHONPATH, inherited by doctor's own vLLM probe), an unreachable endpoint, an
uncached model in offline mode, an occupied port — each with its warning or error and fix."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from servemark.deploy.local import free_port
from tests.conftest import SRC

BLOCK_VLLM = '''
import sys

class _NoVllm:
    def find_spec(self, name, path=None, target=None):
        if name == "vllm" or name.startswith("vllm."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoVllm())
'''
# checks whose verdict depends on the machine rather than on what the test sets up
MACHINE_DEPENDENT = {"slurm", "pbs", "ray", "hf cache", "cpu/memory"}


def doctor(*args: str, env: dict[str, str] | None = None, pythonpath: list[Path] = (),
           timeout: float = 300) -> tuple[int, dict[str, dict], str]:
    full = dict(os.environ)
    full.pop("HF_TOKEN", None)
    full.pop("HUGGING_FACE_HUB_TOKEN", None)
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join(map(str, [*pythonpath, SRC]))
    proc = subprocess.run([sys.executable, "-m", "servemark", "doctor", "--json", *args], capture_output=True,
                          text=True, env=full, timeout=timeout, check=False)
    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["ok"] == (proc.returncode == 0)
    return proc.returncode, checks, proc.stdout + proc.stderr


def test_all_ok_against_the_real_server_and_tiny_model(vllm_server, tiny_model: Path) -> None:
    code, checks, _ = doctor("--model", str(tiny_model), "--base-url", vllm_server.base_url,
                             "--port", str(free_port()),
                             env={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"})
    assert code == 0
    bad = {n: c for n, c in checks.items() if c["status"] != "ok" and n not in MACHINE_DEPENDENT}
    assert not bad, bad
    assert all(c["status"] != "error" for c in checks.values())
    assert "CPU build" in checks["vllm"]["detail"]
    assert checks["model files"]["detail"] == f"local directory {tiny_model}"
    # 1 GiB of KV cache holds 2^30 / 512 bytes per token = 2,097,152 tokens; the model has 2,048 positions
    assert "largest --max-model-len in that KV cache: 2,048" in checks["max model len"]["detail"]
    assert checks["models served"]["detail"] == "tiny, max model len 2,048"
    with urllib.request.urlopen(vllm_server.base_url + "/version") as resp:
        version = json.loads(resp.read())["version"]
    assert checks["server version"]["detail"] == f"/version: {version}"
    assert "reports usage" in checks["streaming"]["detail"]


def test_missing_pieces_without_vllm(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_VLLM)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, checks, text = doctor(
            "--model", "meta-llama/Llama-3.1-8B-Instruct", "--port", str(port), "--gpu", "H100",
            env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, pythonpath=[blocker], timeout=120)
    assert code == 1
    assert checks["vllm"]["status"] == "error" and "not installed" in checks["vllm"]["detail"]
    assert "pip install vllm" in checks["vllm"]["fix"]
    files = checks["model files"]
    assert files["status"] == "error" and "not cached" in files["detail"] and "HF_HUB_OFFLINE" in files["detail"]
    assert "hf download meta-llama/Llama-3.1-8B-Instruct" in files["fix"]
    assert checks["hf token"]["status"] == "warning" and "HF_TOKEN" in checks["hf token"]["fix"]
    assert checks[f"port {port}"]["status"] == "warning" and "--port" in checks[f"port {port}"]["fix"]
    assert checks["hf cache"]["detail"].startswith(str(tmp_path / "hf" / "hub"))
    # the planner still answers from the catalog: 8B on one H100 fits its full 131,072 context
    assert checks["model fits"]["status"] == "ok"
    assert "largest --max-model-len on TP1 x PP1 H100-SXM: 131,072" in checks["max model len"]["detail"]


def test_unreachable_endpoint_and_token_never_printed(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_VLLM)
    secret = "hf_doctorSECRET42"
    url = f"http://127.0.0.1:{free_port()}"
    code, checks, text = doctor("--base-url", url, env={"HF_TOKEN": secret}, pythonpath=[blocker], timeout=120)
    assert code == 1
    ep = checks["endpoint"]
    assert ep["status"] == "error" and f"cannot reach {url}" in ep["detail"]
    assert "--base-url" in ep["fix"]
    # vLLM is optional when only an endpoint is checked
    assert checks["vllm"]["status"] == "warning"
    assert checks["hf token"]["detail"] == "set (from $HF_TOKEN)"
    assert secret not in text


def test_human_output_one_line_per_check_with_fixes(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_VLLM)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(SRC)]), COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "servemark", "doctor"], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.startswith("error") and "vllm: not installed" in line for line in lines)
    assert any(line.strip().startswith("fix: pip install vllm") for line in lines)
    assert any(line.startswith("ok") and "python:" in line for line in lines)
    assert "1 error(s)" in proc.stderr
