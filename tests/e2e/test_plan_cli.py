"""`servemark plan` as a user runs it: output, published figures, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servemark.cli.common import out
from servemark.cli.main import app

runner = CliRunner()
CONFIGS = Path(__file__).parents[1] / "unit" / "plan" / "configs"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables wide enough that no figure is wrapped across lines."""
    monkeypatch.setattr(out, "_width", 250)


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["plan", *args], terminal_width=200)
    return res.exit_code, res.output


def test_memory_70b_correct_by_default() -> None:
    code, text = run("memory", "Llama-3.1-70B", "--gpu", "H100-80GB", "--context", "128000")
    assert code == 0, text
    assert "141.11 GB" in text and "39.06 GiB" in text and "327,680 bytes" in text
    assert "min GPUs for the weights" in text
    assert "70.55e9 parameters (from config)" in text and "--params 70e9" in text


def test_memory_reproduces_published_405b_with_stated_assumptions() -> None:
    code, text = run("memory", "Llama-3.1-405B", "--gpu", "H100-80GB", "--context", "128000",
                     "--params", "405e9", "--kv-dtype", "fp32")
    assert code == 0, text
    assert "810.00 GB" in text and "123.05 GiB" in text
    rows = [line for line in text.splitlines() if "min GPUs" in line]
    assert "11" in rows[0] and "12" in rows[1]
    assert "405e9 parameters (given)" in text and "KV dtype fp32 (as given)" in text


def test_memory_405b_default_needs_11_gpus_for_full_context() -> None:
    code, text = run("memory", "Llama-3.1-405B", "--gpu", "H100-80GB", "--context", "128000")
    assert code == 0, text
    assert "61.52 GiB" in text
    rows = [line for line in text.splitlines() if "min GPUs" in line]
    assert all(" 11 " in r for r in rows)


def test_memory_from_config_file() -> None:
    code, text = run("memory", str(CONFIGS / "mixtral-8x7b.json"), "--gpu", "A100-80GB", "--context", "32768")
    assert code == 0, text
    assert "93.41 GB" in text


@pytest.mark.parametrize("args, fragment", [
    (["memory", "Llama-3.1-70B", "--gpu", "TPU-v9"], "unknown GPU 'TPU-v9'"),
    (["memory", "no-such-model"], "unknown model 'no-such-model'"),
    (["predict", "Llama-3.1-8B", "--gpu", "nope"], "unknown GPU"),
    (["advise", "unknown/model-x"], "unknown model"),
    (["memory", "Llama-3.1-8B", "--dtype", "fp5"], "unknown dtype"),
    (["predict", "Llama-3.1-8B", "--tp", "3"], "TP 3 is not valid"),
    (["predict", "Llama-3.1-8B", "--concurrency", "a,b"], "--concurrency expects"),
    (["predict", "Llama-3.1-8B", "--gpu", "custom"], "a custom GPU needs"),
])
def test_errors_are_one_line_and_nonzero(args: list[str], fragment: str) -> None:
    code, text = run(*args)
    assert code == 2
    assert fragment in text and "Traceback" not in text
    assert text.strip().startswith("error:")


def test_advise_recommends_and_explains() -> None:
    code, text = run("advise", "Llama-3.1-8B", "--gpu", "H100", "--gpus-per-node", "8")
    assert code == 0, text
    assert "recommended" in text and "valid TP sizes" in text and "8 replica(s) of TP1" in text


def test_predict_serving_and_static_tables() -> None:
    code, text = run("predict", "Llama-3.1-70B", "--gpu", "H100", "--tp", "4", "--concurrency", "1,32")
    assert code == 0, text
    assert "TTFT ms" in text and "memory" in text
    code, text = run("predict", "Llama-2-7B", "--gpu", "A100-80GB", "--batch", "1,64", "--dtype", "fp16")
    assert code == 0 and "batch" in text


def test_validate_json_separates_sets(tmp_path: Path) -> None:
    res = runner.invoke(app, ["plan", "validate", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc["mape_pct"]) == {"calibration", "validation"}
    assert {r["set"] for r in doc["rows"]} == {"calibration", "validation"}
    assert all(r["source"] in doc["sources"] for r in doc["rows"])


def test_validate_table_prints_mape() -> None:
    code, text = run("validate")
    assert code == 0, text
    assert "validation MAPE ttft_ms" in text and "calibration MAPE output_tokens_per_s" in text


def test_gpus_and_models_listings_cite_sources() -> None:
    code, text = run("gpus")
    assert code == 0 and "MI300X" in text and "Max-1550" in text and "https://" in text
    code, text = run("models")
    assert code == 0 and "Mixtral-8x7B" in text and "huggingface.co" in text


def test_factors_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "f.json"
    bad.write_text('{"mfu": 0.5, "warp": 9}')
    code, text = run("predict", "Llama-3.1-8B", "--factors", str(bad))
    assert code == 2 and "unknown factor(s): warp" in text


def test_calibrate_rejects_a_directory_without_a_run(tmp_path: Path) -> None:
    code, text = run("calibrate", str(tmp_path), "--model", "Llama-3.1-8B", "--gpu", "H100")
    assert code == 1 and "has no summary.json" in " ".join(text.split())
