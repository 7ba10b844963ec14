"""`plan calibrate` on a real run directory: a small `servemark bench` against the session's real
vLLM CPU server on the tiny model, then the planner's predictions compared and fitted to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servemark.api import bench
from servemark.cli.common import out
from servemark.cli.main import app
from servemark.deploy.local import VllmServer
from servemark.plan.calibrate import compare, fit, mape
from servemark.plan.catalog import custom_gpu, resolve_model
from servemark.plan.predict import FIT_START, Factors, Setup
from servemark.plan.runs import load_run_points
from servemark.spec import make_config

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

# The CPU as a "GPU": rough figures for a small server CPU; the fit absorbs the rest.
CPU = ["--gpu", "custom", "--memory-gb", "24", "--mem-bw-gbs", "20", "--tflops", "0.5"]


@pytest.fixture(scope="module")
def run_dir(vllm_server: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("plan-run") / "run"
    cfg = make_config(base_url=vllm_server.base_url, model="tiny", concurrency=[1, 4], num_requests=8,
                      input_len=64, output_len=16, output_dir=out_dir, seed=3)
    result = bench(cfg)
    assert all(p.completed == 8 for p in result.points)
    return out_dir


def test_points_come_from_the_run(run_dir: Path, tiny_model: Path) -> None:
    setup = Setup(resolve_model(str(tiny_model)), custom_gpu(None, 24, 20, 0.5))
    points = load_run_points([run_dir], setup)
    assert [p.load for p in points] == [1, 4]
    for p in points:
        assert p.input_len == 64 and p.output_len == 16  # measured token means (usage)
        assert set(p.measured) == {"ttft_ms", "itl_ms", "output_tokens_per_s"}
    fitted = fit(points, Factors(**FIT_START))
    before, after = mape(compare(points, Factors())), mape(compare(points, fitted))
    assert sum(e for e, _ in after.values()) < sum(e for e, _ in before.values())
    # a tiny model on a CPU is dominated by fixed per-step costs, not bandwidth
    assert fitted.step_overhead_s > 1e-4


def test_calibrate_cli_fits_saves_and_predict_uses_it(run_dir: Path, tiny_model: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out, "_width", 250)
    runner = CliRunner()
    saved = tmp_path / "factors.json"
    res = runner.invoke(app, ["plan", "calibrate", str(run_dir), "--model", str(tiny_model), *CPU,
                              "--save", str(saved)])
    assert res.exit_code == 0, res.output
    assert "predicted vs measured" in res.output and "MAPE itl_ms" in res.output
    factors = json.loads(saved.read_text())
    assert set(factors) == set(Factors().to_dict())
    res = runner.invoke(app, ["plan", "predict", str(tiny_model), *CPU, "--input-len", "64",
                              "--output-len", "16", "--concurrency", "1,4", "--factors", str(saved)])
    assert res.exit_code == 0, res.output
    assert "step_overhead_s=" in res.output

