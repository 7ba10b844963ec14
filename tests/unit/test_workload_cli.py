"""`servemark workload preview|save` and the workload flags of `servemark bench` (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servemark.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workload", "chat", "--api", "completions"], "the chat workload sends chat messages"),
        (["--workload", "multiturn", "--api", "completions"], "the multiturn workload sends chat messages"),
        (["--workload", "dataset"], "the dataset workload needs a dataset file"),
        (["--dataset", "x.jsonl"], "a dataset file needs workload dataset"),
        (["--workload", "prefix"], "the prefix workload needs prefix_len"),
        (["--prefix-len", "5"], "prefix_len applies to workload prefix"),
        (["--min-input-len", "5"], "filter dataset rows"),
        (["--workload", "sharegpt"], "invalid workload"),
        (["--input-len", "uniform:9:3"], "low 9 > high 3"),
        (["--output-len", "gauss:3"], "invalid output_len"),
        (["--input-len", "0"], "invalid input_len"),
    ],
)
def test_bad_workload_flags_fail_before_any_network(args: list[str], needle: str) -> None:
    r = invoke("bench", "--base-url", "http://127.0.0.1:9", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_preview_needs_a_tokenizer() -> None:
    r = invoke("workload", "preview")
    assert r.exit_code == 2 and "needs a tokenizer" in r.output


def test_preview_stats_and_samples(tiny_model: Path) -> None:
    r = invoke("workload", "preview", "--tokenizer", tiny_model, "--workload", "chat",
               "--input-len", "uniform:100:200", "--num-requests", "30", "--json")
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    assert stats["workload"] == "chat" and stats["requests"] == 30
    assert 100 <= stats["input_len"]["min"] <= stats["input_len"]["max"] <= 200
    assert stats["output_len"]["mean"] == 128.0
    r = invoke("workload", "preview", "--tokenizer", tiny_model, "--workload", "multiturn",
               "--input-len", "20", "--turns", "2", "--num-requests", "3", "--samples", "2")
    assert r.exit_code == 0, r.output
    assert "6 requests in 3 conversations" in r.stdout and "conv 0 (2 turns)" in r.stdout


def test_save_then_preview_replay(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.jsonl"
    r = invoke("workload", "save", out, "--tokenizer", tiny_model, "--input-len", "normal:64:8",
               "--output-len", "16", "--num-requests", "12", "--seed", "3")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and all(set(row) == {"prompt", "input_len", "output_len"} for row in rows)
    assert "--workload dataset --dataset" in r.output
    r = invoke("workload", "preview", "--tokenizer", tiny_model, "--workload", "dataset",
               "--dataset", out, "--num-requests", "12", "--json")
    stats = json.loads(r.stdout)
    assert stats["input_len"]["mean"] == pytest.approx(sum(row["input_len"] for row in rows) / 12)


def test_malformed_dataset_is_one_line(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": 3}\n')
    r = invoke("workload", "preview", "--tokenizer", tiny_model, "--workload", "dataset", "--dataset", bad)
    assert r.exit_code == 2 and f"{bad}:2: 'prompt' must be a non-empty string" in r.output
    assert "Traceback" not in r.output
