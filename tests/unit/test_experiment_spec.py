"""The experiment spec: documented errors, bench flag ↔ spec key parity, the example from init."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from servemark.cli.main import app
from servemark.errors import ConfigError
from servemark.experiment import bench_fields, example_spec, load_spec, parse_spec
from servemark.spec import BenchConfig

DEPLOY = {"model": "/models/x"}


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as e:
        parse_spec(data, "exp.yaml")
    return e.value.one_line()


def test_every_bench_flag_has_a_spec_key_with_the_same_name() -> None:
    command = typer.main.get_command(app).commands["bench"]  # type: ignore[attr-defined]
    fields = BenchConfig.model_fields
    # output format only: --json, --metrics-profile, --table-format; --resume names a run directory
    names = [p.name for p in command.params
             if p.name not in ("as_json", "metrics_profile", "table_format", "resume")]
    assert len(names) > 20
    for name in names:
        (mapped,) = bench_fields({name: None})
        assert mapped in fields, f"--{name.replace('_', '-')} has no spec key"


def test_spec_keys_use_flag_names() -> None:
    spec = parse_spec({"deploy": DEPLOY, "bench": {"duration": 5, "connect_timeout": 3,
                                                   "concurrency": [1, 2], "lb_policy": "least-outstanding"}})
    cfg = spec.bench_config("http://h:1")
    assert cfg.duration_s == 5 and cfg.connect_timeout_s == 3 and cfg.concurrency == [1, 2]
    assert cfg.lb_policy == "least-outstanding"


def test_unknown_keys_are_errors_listing_the_allowed_ones() -> None:
    msg = error_of({"deploy": DEPLOY, "bench": {"concurency": [1]}})
    assert "unknown key 'bench.concurency'" in msg and "concurrency" in msg and "duration" in msg
    msg = error_of({"deploy": {**DEPLOY, "gpus": 2}})
    assert "unknown key 'deploy.gpus'" in msg and "replicas" in msg
    msg = error_of({"deploy": DEPLOY, "benchmark": {}})
    assert "unknown key 'benchmark'" in msg and "bench" in msg


def test_bad_values_name_the_key_and_the_allowed_values() -> None:
    msg = error_of({"deploy": DEPLOY, "bench": {"api": "embeddings"}})
    assert "bench.api" in msg and "'completions'" in msg and "'chat'" in msg
    msg = error_of({"deploy": DEPLOY, "bench": {"lb_policy": "random"}})
    assert "bench.lb_policy" in msg and "'round-robin'" in msg and "'least-outstanding'" in msg
    msg = error_of({"deploy": {**DEPLOY, "device": "tpu"}})
    assert "deploy.device" in msg and "'auto'" in msg and "'gpu'" in msg and "'cpu'" in msg
    msg = error_of({"deploy": {**DEPLOY, "replicas": "many"}})
    assert "deploy.replicas" in msg and "'max'" in msg
    msg = error_of({"deploy": DEPLOY, "bench": {"duration": -1}})
    assert "bench.duration" in msg and "greater than 0" in msg
    msg = error_of({"deploy": DEPLOY, "bench": {"concurrency": [1], "request_rate": [2]}})
    assert "not both" in msg


def test_missing_model_and_deploy_or_attach_rules() -> None:
    assert "missing required key 'deploy.model'" in error_of({"deploy": {}})
    assert "nothing to benchmark" in error_of({"bench": {}})
    assert "not both" in error_of({"deploy": DEPLOY, "bench": {"base_url": "http://h:1"}})
    assert "must be a mapping" in error_of(["a"])
    attach = parse_spec({"bench": {"base_url": ["http://a:1", "http://b:2"]}})
    assert attach.bench_config().base_urls == ["http://a:1", "http://b:2"]


def test_load_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("deploy:\n  model: [x\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: not valid YAML"):
        load_spec(bad)


@pytest.mark.parametrize(("text", "where", "key"), [
    # a bad value deep in the bench section (validated as BenchConfig): its line and key
    ("name: x\ndeploy:\n  model: m\nbench:\n  warmup: 1\n  arrival: sometimes\n", 6,
     "bench.arrival"),
    # a check across keys: the line of the section
    ("name: x\ndeploy:\n  model: m\nbench:\n  warmup: 1\n  concurrency: [1, -4]\n", 4,
     "concurrency"),
    # the spec key without the _s suffix (duration → duration_s)
    ("deploy:\n  model: m\nbench:\n  duration: -1\n", 4, "bench.duration"),
    # an unknown key in deploy, and a bad deploy value
    ("deploy:\n  model: m\n  replicaz: 2\nbench: {}\n", 3, "deploy.replicaz"),
    ("deploy:\n  model: m\n  port: 99999\n", 3, "deploy.port"),
    ("name: x\nbench:\n  base_url: http://h:1\n  num-requests: 0\n", 4, "bench.num_requests"),
])
def test_spec_errors_name_file_line_and_key(tmp_path: Path, text: str, where: int,
                                            key: str) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.message.startswith(f"{path}:{where}: ")
    assert key in info.value.message


@pytest.mark.parametrize("cpu", [False, True])
def test_example_spec_is_valid_and_commented(cpu: bool) -> None:
    text = example_spec("e.yaml", "/models/m", "m", "e", cpu=cpu)
    assert text.count("#") > 10
    spec = parse_spec(yaml.safe_load(text))
    assert spec.deploy is not None and spec.deploy.model == "/models/m"
    assert ("--enforce-eager" in spec.deploy.vllm_args) == cpu
    assert spec.bench_config("http://h:1").concurrency == [1, 4]


def test_cli_init_then_invalid_run(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "exp.yaml"
    res = runner.invoke(app, ["init", str(path), "--model", "/m"])
    assert res.exit_code == 0 and path.exists()
    assert runner.invoke(app, ["init", str(path)]).exit_code == 2  # exists, no --force
    data = yaml.safe_load(path.read_text())
    data["bench"]["arrival"] = "bursty"
    path.write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["run", str(path)])
    assert res.exit_code == 2
    assert "bench.arrival" in res.output and "'poisson'" in res.output and "Traceback" not in res.output


def test_secret_env_is_hidden_in_public_dict() -> None:
    spec = parse_spec({"deploy": {**DEPLOY, "env": {"HF_TOKEN": "hf_abc", "OMP": "1"}}})
    assert spec.deploy is not None
    assert spec.deploy.public_dict()["env"] == {"HF_TOKEN": "***", "OMP": "1"}
