"""`servemark run --resume RUN_DIR`: a `kill -9` of `servemark run` mid-benchmark leaves its
(stand-in) vLLM running; `servemark cleanup` stops it; the resume deploys again, sends only the
missing requests (every request id recorded once) and leaves nothing running."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml

from servemark.store.rundir import load_records
from tests.deploy_helpers import (
    cli_env,
    fake_vllm_python,
    leftovers,
    run,
    servemark,
    server_pids,
    wait_for,
)

N = 30
POINTS = [1, 3]


def test_kill9_run_then_cleanup_then_resume(tmp_path: Path) -> None:
    env = cli_env(tmp_path, OPENAI_API_KEY="")
    out = tmp_path / "run"
    spec = {"name": "t",
            "deploy": {"model": "fake-model", "python": str(fake_vllm_python(tmp_path)),
                       "device": "cpu", "served_model_name": "stub", "ready_timeout": 60},
            "bench": {"concurrency": POINTS, "num_requests": N, "input_len": 8, "output_len": 16,
                      "server_metrics": False, "seed": 5, "output_dir": str(out)}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = servemark("run", str(path), env=env)
    jsonl = out / "requests.jsonl"
    wait_for(lambda: jsonl.exists() and jsonl.read_bytes().count(b"\n") >= N + 5, 120,
             "the second load point to start")
    first_servers = server_pids(out)
    proc.kill()
    proc.wait(10)
    assert leftovers(first_servers, 0)  # kill -9: the server outlived servemark
    cleaned = run("cleanup", env=env, timeout=60)
    assert cleaned.returncode == 0 and leftovers(first_servers) == [], cleaned.stderr

    res = run("run", "--resume", str(out), env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and len(summary["resumes"]) == 1
    assert [p["completed"] for p in summary["points"]] == [N, N]
    ids = Counter(r.request_id for r in load_records(out).records)
    assert sorted(ids) == list(range(N * len(POINTS))) and set(ids.values()) == {1}
    (resumed,) = out.glob("resume-*/deployment.json")
    new_servers = [int(r["pid"]) for r in json.loads(resumed.read_text())["replicas"]]
    assert new_servers != first_servers and leftovers(new_servers) == []
    assert list((tmp_path / "state" / "owned").glob("*")) == []


def test_resume_asks_for_the_spec_when_secrets_were_hidden(tmp_path: Path) -> None:
    import pytest

    from servemark.errors import ConfigError
    from servemark.experiment import DeployConfig
    from servemark.orchestrate import recorded_spec

    deploy = DeployConfig(model="m", env={"HF_TOKEN": "hf_x"}, vllm_args=["--api-key", "k"])
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"name": "t", "deploy": deploy.public_dict(), "bench": {"num_requests": 2}}))
    with pytest.raises(ConfigError, match=r"does not keep secret values \(HF_TOKEN, --api-key\)") as info:
        recorded_spec(tmp_path)
    assert "servemark run SPEC --resume RUN_DIR" in (info.value.hint or "")
    clean = DeployConfig(model="m", vllm_args=["--max-model-len", "64"])
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"name": "t", "deploy": clean.public_dict(), "bench": {"num_requests": 2}}))
    assert recorded_spec(tmp_path).deploy == clean
