"""``servemark run`` end to end on the example spec from ``servemark init`` with a real vLLM CPU
server: deploy → ready → two load points → teardown, one run directory, nothing left running,
and HF_TOKEN (set in the environment and in the spec's env) in no file and no output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy_helpers import cli_env, leftovers, run, server_pids

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TOKEN = "hf_SeCrEtToken0123456789abcdef"


def test_run_example_spec_end_to_end(tiny_model: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path, HF_TOKEN=TOKEN)
    spec_path = tmp_path / "experiment.yaml"
    init = run("init", str(spec_path), "--cpu", "--model", str(tiny_model),
               "--served-model-name", "tiny", env=env)
    assert init.returncode == 0, init.stderr
    spec = yaml.safe_load(spec_path.read_text())
    run_dir = tmp_path / "results" / "exp"
    spec["deploy"]["env"] = {"HF_TOKEN": TOKEN}
    spec["bench"].update(num_requests=6, input_len=32, output_len=16, warmup=1,
                         output_dir=str(run_dir))
    spec_path.write_text(yaml.safe_dump(spec))

    res = run("run", str(spec_path), env=env)
    assert res.returncode == 0, res.stderr
    assert "servers stopped" in res.stderr and "c=1" in res.stdout and "c=4" in res.stdout

    names = {p.name for p in run_dir.iterdir()}
    assert {"experiment.json", "deployment.json", "server.log", "requests.jsonl",
            "summary.json", "summary.csv"} <= names
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["model"] == "tiny"
    assert [p["completed"] for p in summary["points"]] == [6, 6]
    assert len((run_dir / "requests.jsonl").read_text().splitlines()) == 12
    assert json.loads((run_dir / "experiment.json").read_text())["deploy"]["env"] == {"HF_TOKEN": "***"}

    assert leftovers(server_pids(run_dir)) == []
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path
    assert TOKEN not in res.stdout + res.stderr + init.stdout + init.stderr
