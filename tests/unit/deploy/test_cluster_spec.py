"""ClusterSpec validation and replica layout (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servemark.deploy.cluster_spec import (
    BenchStep,
    hms,
    load_cluster_spec,
    make_cluster_spec,
    time_to_seconds,
)
from servemark.deploy.layout import plan_layout
from servemark.errors import ConfigError


def spec(**kw: object):
    return make_cluster_spec({"model": "m", **kw})


def test_single_node_replica_uses_all_its_gpus() -> None:
    [r] = plan_layout(spec(tensor_parallel_size=4, gpus_per_node=4))
    assert r.nodes == (0,) and r.gpu_ids is None and not r.multinode and r.port == 8000


def test_multinode_tp_pp_takes_whole_nodes() -> None:
    [r] = plan_layout(spec(tensor_parallel_size=8, pipeline_parallel_size=2, nodes=2, gpus_per_node=8))
    assert r.multinode and r.head == 0 and r.workers == (1,)
    # TP 16 across 4 × 4 GPUs
    [r] = plan_layout(spec(tensor_parallel_size=16, nodes=4, gpus_per_node=4))
    assert r.nodes == (0, 1, 2, 3)


def test_two_multinode_replicas_get_disjoint_node_groups() -> None:
    reps = plan_layout(spec(tensor_parallel_size=8, pipeline_parallel_size=2, nodes=4,
                            gpus_per_node=8, replicas=2))
    assert [r.nodes for r in reps] == [(0, 1), (2, 3)]


def test_replicas_round_robin_with_gpu_slices_and_ports() -> None:
    reps = plan_layout(spec(tensor_parallel_size=2, nodes=2, gpus_per_node=8, replicas=5, port=9000))
    assert [(r.nodes[0], r.gpu_ids, r.port) for r in reps] == [
        (0, (0, 1), 9000), (1, (0, 1), 9000), (0, (2, 3), 9001), (1, (2, 3), 9001),
        (0, (4, 5), 9002)]


def test_cpu_nodes_and_explicit_nodes_per_replica() -> None:
    [r] = plan_layout(spec(tensor_parallel_size=2, nodes=1))
    assert not r.multinode
    [r] = plan_layout(spec(tensor_parallel_size=2, nodes=2, nodes_per_replica=2))
    assert r.nodes == (0, 1)


@pytest.mark.parametrize(("kw", "message"), [
    ({"tensor_parallel_size": 12, "gpus_per_node": 8, "nodes": 2}, "whole nodes"),
    ({"tensor_parallel_size": 8, "pipeline_parallel_size": 2, "gpus_per_node": 8, "nodes": 3},
     "need nodes=2"),
    ({"tensor_parallel_size": 4, "gpus_per_node": 8, "nodes": 2}, "idle"),
    ({"tensor_parallel_size": 4, "gpus_per_node": 8, "replicas": 3}, "do not fit"),
    ({"environment": {"vars": {"HF_TOKEN": "x"}}}, "secret"),
    ({"environment": {"vars": {"MY_API_KEY": "x"}}}, "secret"),
    ({"environment": {"vars": {"1BAD": "x"}}}, "not a valid"),
    ({"scheduler": {"partition": "gpu; rm -rf /"}}, "one word"),
    ({"scheduler": {"time": "an hour"}}, "time"),
    ({"scheduler": {"mem": "lots"}}, "mem"),
    ({"vllm_args": ["--pipeline-parallel-size=2"]}, "pipeline_parallel_size"),
    ({"vllm_args": ["--hf-token", "x"]}, "secret"),
    ({"bench": {"args": {"output_dir": "/x"}}}, "--output-dir"),
    ({"name": "has space"}, "name"),
    ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
    ({"unknown_key": 1}, "unknown_key"),
    ({"ray": {"hostname_suffix": "hsn; id"}}, "hostname_suffix"),
    ({"ray": {"hostname_suffix": ".hsn.x", "network_interface": "hsn0"}}, "not both"),
])
def test_bad_specs_are_one_line_config_errors(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        spec(**kw)
    assert message in exc.value.one_line()
    assert "\n" not in exc.value.one_line()


def test_bench_args_dict_to_argv() -> None:
    step = BenchStep(args={"concurrency": [1, 8], "num_requests": 10, "stream": False,
                           "ignore_eos": True, "tokenizer": None})
    assert step.argv() == ["--concurrency", "1,8", "--num-requests", "10", "--no-stream",
                           "--ignore-eos"]
    assert BenchStep(args=["--concurrency", "4"]).argv() == ["--concurrency", "4"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30", 1800), ("30:15", 1815), ("01:30:00", 5400), ("2-00:00:00", 172800), ("1-12", 129600),
    ("1-00:30", 88200)])
def test_slurm_time_formats(text: str, seconds: int) -> None:
    assert time_to_seconds(text) == seconds


def test_hms() -> None:
    assert hms(172800) == "48:00:00" and hms(5415) == "01:30:15"


def test_load_yaml(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("cluster:\n  model: m\n  nodes: 1\n  scheduler: {partition: gpu}\n")
    assert load_cluster_spec(p).scheduler.partition == "gpu"
    p.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="s.yaml:2: not valid YAML"):
        load_cluster_spec(p)
    # a bad value names the file, the line and the key (under a top-level cluster: too)
    p.write_text("cluster:\n  model: m\n  nodes: 1\n  scheduler:\n    partition: gpu\n"
                 "    time: soon\n")
    with pytest.raises(ConfigError, match=r"s.yaml:6: invalid scheduler.time"):
        load_cluster_spec(p)
    p.write_text("model: m\nnodes: 1\nbogus: 2\n")
    with pytest.raises(ConfigError, match=r"s.yaml:3: .*bogus"):
        load_cluster_spec(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_cluster_spec(tmp_path / "missing.yaml")


def test_bench_step_from_an_experiment_spec(tmp_path: Path) -> None:
    """The experiment's load points run against the job's servers; its deploy section and the
    keys the job sets itself (results, model) are left out; the path is relative to the spec."""
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "sweep.yaml").write_text(
        "name: sweep\ndeploy: {model: /models/x}\n"
        "bench: {concurrency: [1, 4], num_requests: 20, input_len: 64, output_len: 16,\n"
        "        stream: false, results_root: /elsewhere, extra_body: {top_k: 5}}\n")
    p = tmp_path / "job.yaml"
    p.write_text("model: m\nbench: {experiment: exp/sweep.yaml, health_timeout_s: 60}\n")
    argv = load_cluster_spec(p).bench.argv()  # type: ignore[union-attr]
    assert argv == ["--concurrency", "1,4", "--num-requests", "20", "--input-len", "64",
                    "--output-len", "16", "--no-stream", "--extra-body", '{"top_k": 5}']


@pytest.mark.parametrize(("bench", "message"), [
    ({"experiment": "missing.yaml"}, "does not exist"),
    ({"experiment": "exp.yaml", "args": ["--concurrency", "2"]}, "not both"),
    ({"experiment": "secret.yaml"}, "OPENAI_API_KEY"),
    ({"experiment": "bad.yaml"}, "concurency"),
])
def test_bad_experiment_bench_steps(tmp_path: Path, bench: dict, message: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text("bench: {base_url: http://x:1, concurrency: [2]}\n")
    (tmp_path / "secret.yaml").write_text("bench: {base_url: http://x:1, api_key: sk-abc}\n")
    (tmp_path / "bad.yaml").write_text("bench: {base_url: http://x:1, concurency: [2]}\n")
    with pytest.raises(ConfigError) as exc:
        spec(bench=bench)
    assert message in exc.value.one_line() and "\n" not in exc.value.one_line()
    assert "sk-abc" not in exc.value.one_line()
