"""Golden-text tests of rendered job scripts, and shellcheck on every one of them.

Regenerate after an intended template change: SERVEMARK_UPDATE_GOLDEN=1 pytest tests/unit/deploy
and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from servemark import __version__
from servemark.deploy.cluster_spec import make_cluster_spec
from servemark.deploy.render import render
from tests.conftest import need
from tests.unit.deploy.specs import SPECS

GOLDEN = Path(__file__).with_name("golden")
CASES = [(name, sched) for name in SPECS for sched in ("slurm", "pbs")]


def rendered(name: str, scheduler: str) -> str:
    # the version line is the only thing that changes between releases
    return render(make_cluster_spec(SPECS[name]), scheduler).replace(__version__, "VERSION")  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "scheduler"), CASES)
def test_golden(name: str, scheduler: str) -> None:
    path = GOLDEN / f"{name}.{'sbatch' if scheduler == 'slurm' else 'pbs'}"
    text = rendered(name, scheduler)
    if os.environ.get("SERVEMARK_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with SERVEMARK_UPDATE_GOLDEN=1"
    assert text == path.read_text()


@pytest.mark.parametrize(("name", "scheduler"), CASES)
def test_shellcheck_clean(name: str, scheduler: str, tmp_path: Path) -> None:
    need(shutil.which("shellcheck") is not None, "shellcheck not installed (apt-get install shellcheck)")
    script = tmp_path / "job.sh"
    script.write_text(rendered(name, scheduler))
    r = subprocess.run(["shellcheck", "--shell=bash", str(script)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize(("name", "scheduler"), CASES)
def test_bash_syntax(name: str, scheduler: str, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(rendered(name, scheduler))
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_multinode_script_content() -> None:
    text = rendered("multinode_tp8_pp2", "slurm")
    assert "#SBATCH --nodes=2" in text and "#SBATCH --gpus-per-node=8" in text
    assert "--head --block" in text and "--temp-dir=\"$RAY_TMP-n0\"" in text
    assert "--temp-dir=\"$RAY_TMP-n1\"" in text  # nodes that share /tmp keep apart
    # gloo and NCCL bootstrap over the interface Ray's node IPs come from
    assert 'export GLOO_SOCKET_IFNAME="ib0"' in text and 'export NCCL_SOCKET_IFNAME="ib0"' in text
    assert "free-port --count 3" in text and "wait-ray" in text and "--nodes 2 --gpus 16" in text
    # Ray's fixed default ports would collide with another job's Ray on a shared node
    assert '--ray-client-server-port="$CLIENT_PORT"' in text
    assert text.count('--dashboard-agent-listen-port="$AGENT_PORT"') == 2  # head and worker
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 2" in text
    assert "--distributed-executor-backend ray" in text
    assert 'HF_HOME="/scratch/hf cache"' in text  # quoted
    assert "#SBATCH --time=2-00:00:00" in text and "#SBATCH --mail-type=END" in text


def test_socket_ifname_and_ray_gpus() -> None:
    base = {"model": "m", "nodes": 2, "nodes_per_replica": 2, "tensor_parallel_size": 2}
    # a spec's own value wins; single-node replicas get nothing
    text = render(make_cluster_spec({**base, "ray": {"network_interface": "eth1", "num_gpus": 1},
                                     "environment": {"vars": {"NCCL_SOCKET_IFNAME": "=ib"}}}),
                  "slurm")
    assert 'export GLOO_SOCKET_IFNAME="eth1"' in text and 'NCCL_SOCKET_IFNAME="=ib"' in text
    assert text.count("--num-gpus=1") == 2 and "--nodes 2 --gpus 2 " in text
    text = render(make_cluster_spec({"model": "m", "ray": {"network_interface": "eth1"}}), "slurm")
    assert "SOCKET_IFNAME" not in text
    text = render(make_cluster_spec(base), "slurm")
    assert "SOCKET_IFNAME" not in text and text.count("--num-gpus=0") == 2


def test_replicas_spread_over_nodes() -> None:
    text = rendered("replicas4_2nodes", "slurm")
    assert 'launch server-r0 "${NODES[0]}" env CUDA_VISIBLE_DEVICES=0,1,2,3' in text
    assert 'launch server-r1 "${NODES[1]}" env CUDA_VISIBLE_DEVICES=0,1,2,3' in text
    assert 'launch server-r2 "${NODES[0]}" env CUDA_VISIBLE_DEVICES=4,5,6,7' in text
    assert "--port 9001" in text and "ray" not in text.lower().replace("array", "")
    assert "wait -n" in text  # serve-only: the job lives as long as the servers


def test_pbs_directives() -> None:
    text = rendered("aurora_xpu", "pbs")
    assert "#PBS -l select=2:ngpus=12:system=aurora" in text
    assert "#PBS -l walltime=06:00:00" in text and "#PBS -l filesystems=home:flare" in text
    assert "#PBS -q prod" in text and "#PBS -A MyProject" in text
    assert 'export ZE_FLAT_DEVICE_HIERARCHY="FLAT"' in text and "--device xpu" in text
    assert "PBS_NODEFILE" in text and "ssh" in text
    # node IPs from the high-speed network host names, on the head and on each worker
    assert text.count("node-ip --hostname-suffix .hsn.cm.aurora.alcf.anl.gov)") == 2
    assert "SOCKET_IFNAME" not in text  # no interface named: the libraries keep their choice


def test_polaris_directives() -> None:
    text = rendered("polaris_tp4_pp2", "pbs")
    assert "#PBS -l select=2:ngpus=4:system=polaris" in text.splitlines()
    assert "#PBS -l place=scatter:excl" in text.splitlines()
    assert "#PBS -l filesystems=home:eagle" in text and "#PBS -A MyProject" in text
    assert "  module use /soft/modulefiles\n  module load conda\n  conda activate base\n" in text
    assert text.count("--num-cpus=32") == 2 and "--nodes 2 --gpus 8 " in text
    assert "--tensor-parallel-size 4 --pipeline-parallel-size 2" in text


def test_secrets_never_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123")
    for name, sched in CASES:
        text = rendered(name, sched)
        assert "hf_secretvalue123" not in text
    assert "PASS_ENV=(HF_TOKEN)" in rendered("single_tp4", "slurm")


def test_env_values_expand_variables_only() -> None:
    from servemark.deploy.render import shell_value

    assert shell_value("/scratch/$USER/hf") == '"/scratch/$USER/hf"'
    assert shell_value("${SCRATCH}/x") == '"${SCRATCH}/x"'
    assert shell_value("$(rm -rf /)`id`\"") == '"\\$(rm -rf /)\\`id\\`\\""'
    r = subprocess.run(["bash", "-c", f"USER=ann; printf %s {shell_value('a $USER $(id) `id` 5$')}"],
                       capture_output=True, text=True, check=True)
    assert r.stdout == "a ann $(id) `id` 5$"


def test_health_wait_takes_the_bench_steps_limit() -> None:
    base = {"model": "m", "ready_timeout_s": 700}
    assert "--timeout 700 --watch-pid" in render(make_cluster_spec(base), "slurm")
    text = render(make_cluster_spec({**base, "bench": {"args": [], "health_timeout_s": 90}}), "slurm")
    assert "--timeout 90 --watch-pid" in text
    text = render(make_cluster_spec({**base, "bench": {"args": []}}), "slurm")
    assert "--timeout 700 --watch-pid" in text
