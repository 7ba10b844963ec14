"""Workloads against a real vLLM CPU server on the tiny model: the server's own prompt_tokens
equal the lengths we asked for, conversations grow as expected, and a foreign tokenizer is refused.

The tiny model's tokenizer adds a BOS token (``<s>``) to completions prompts and its chat
template starts with it; vLLM counts it in ``prompt_tokens``, and so does our definition of
input length (``input_len`` = what the server counts, BOS and chat template included).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import servemark
from servemark.errors import ConfigError
from servemark.store.rundir import load_records
from tests.conftest import need
from tests.unit.wordpiece import build_wordpiece

pytestmark = pytest.mark.vllm


def run(server, tmp_path: Path, name: str, **kw: object):
    base: dict = dict(base_url=server.base_url, model="tiny", num_requests=6, output_len=8,
                      concurrency=[3], output_dir=tmp_path / name)
    base.update(kw)
    result = servemark.bench(servemark.BenchConfig(**base))
    recs = load_records(result.run_dir).records
    assert recs and all(r.ok for r in recs), [r.error for r in recs if not r.ok]
    assert all(r.token_source == "usage" for r in recs)
    return result, recs


def test_random_lengths_from_a_distribution_are_exact(vllm_server, tiny_model, tmp_path: Path) -> None:
    result, recs = run(vllm_server, tmp_path, "random", tokenizer=str(tiny_model),
                       input_len="uniform:40:400", num_requests=8)
    wanted = [r.requested_input_tokens for r in recs]
    assert all(40 <= n <= 400 for n in wanted) and len(set(wanted)) > 1
    assert [r.input_tokens for r in recs] == wanted
    assert result.points[0].input_len_mismatches == 0


def test_bos_is_counted(vllm_server, tiny_model, tmp_path: Path) -> None:
    """The definition, checked: the server's count is the prompt's own tokens plus the BOS."""
    from transformers import AutoTokenizer

    from servemark.spec import WorkloadConfig
    from servemark.workload.factory import workload_items
    from servemark.workload.tokenizer import HFTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_model))
    assert hf.bos_token == "<s>" and hf("x")["input_ids"][0] == hf.bos_token_id
    _, recs = run(vllm_server, tmp_path, "bos", tokenizer=str(tiny_model), input_len=50,
                  num_requests=2, concurrency=[1])
    assert [r.input_tokens for r in sorted(recs, key=lambda r: r.request_id)] == [50, 50]
    # what bench sent is what `workload preview/save` builds: prompts of 49 tokens of their own
    sent = workload_items(WorkloadConfig(input_len=50, output_len=8), HFTokenizer(str(tiny_model)), 2)
    assert [len(hf(s.prompt, add_special_tokens=False)["input_ids"]) for s in sent] == [49, 49]


@pytest.mark.parametrize("tokenizer", ["local", "server"])
def test_chat_workload_exact_with_template(vllm_server, tiny_model, tmp_path: Path, tokenizer: str) -> None:
    tok = str(tiny_model) if tokenizer == "local" else None
    result, recs = run(vllm_server, tmp_path, f"chat-{tokenizer}", workload="chat", tokenizer=tok,
                       input_len="normal:600:150", num_requests=5)
    assert all(r.api == "chat" for r in recs)
    assert [r.input_tokens for r in recs] == [r.requested_input_tokens for r in recs]
    assert result.document["config"]["workload"] == "chat"


def test_dataset_workload_exact(vllm_server, tiny_model, tmp_path: Path) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "output_len": o}) + "\n" for p, o in [
        ("Explain prefix caching in one paragraph.", 5),
        ("What limits the batch size of an inference server?", 7),
        ("Why is time to first token larger for long prompts?", 9),
        ("Name three ways to reduce tail latency.", 6),
    ]))
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_model))
    _, recs = run(vllm_server, tmp_path, "dataset", workload="dataset", dataset=data,
                  tokenizer=str(tiny_model), num_requests=4, output_len=8)
    by_out = {r.requested_output_tokens: r for r in recs}
    assert sorted(by_out) == [5, 6, 7, 9]  # per-row output lengths honoured
    for r in recs:
        assert r.output_tokens == r.requested_output_tokens
        assert r.input_tokens == r.requested_input_tokens
    row0 = "Explain prefix caching in one paragraph."
    assert by_out[5].input_tokens == len(hf(row0)["input_ids"])  # BOS + the row's own tokens


def test_saved_workload_replays_on_the_server(vllm_server, tiny_model, tmp_path: Path) -> None:
    from servemark.spec import WorkloadConfig
    from servemark.workload.factory import workload_items
    from servemark.workload.files import save_jsonl
    from servemark.workload.tokenizer import HFTokenizer

    saved = tmp_path / "saved.jsonl"
    items = workload_items(WorkloadConfig(workload="prefix", input_len="uniform:120:200",
                                          prefix_len=100, output_len=8), HFTokenizer(str(tiny_model)), 4)
    save_jsonl(items, saved)
    _, recs = run(vllm_server, tmp_path, "replay", workload="dataset", dataset=saved,
                  tokenizer=str(tiny_model), num_requests=4)
    assert sorted(r.input_tokens for r in recs) == sorted(s.input_len for s in items)


def test_multiturn_histories_grow(vllm_server, tiny_model, tmp_path: Path) -> None:
    result, recs = run(vllm_server, tmp_path, "multi", workload="multiturn", tokenizer=str(tiny_model),
                       input_len=40, output_len=12, turns=4, num_requests=3, concurrency=[3])
    assert len(recs) == 12 and result.points[0].completed == 12
    convs: dict[int, list] = {}
    for r in recs:
        convs.setdefault(r.conversation_id, []).append(r)
    assert len(convs) == 3
    steps = set()
    for turns in convs.values():
        turns.sort(key=lambda r: r.turn)
        assert [r.turn for r in turns] == [1, 2, 3, 4]
        for r in turns:
            assert r.input_tokens == r.requested_input_tokens and r.output_tokens == 12
            assert r.chunk_times_s  # per-turn TTFT measured
        for a, b in zip(turns, turns[1:], strict=False):
            assert b.start_s >= a.end_s  # a turn waits for the previous answer
            step = b.input_tokens - a.input_tokens
            assert step > 40 + 12  # one user and one assistant message plus template tokens
            steps.add(step)
    assert len(steps) == 1  # every exchange adds the same number of tokens
    # conversations ran concurrently: some turn of one overlaps some turn of another
    spans = sorted((r.start_s, r.end_s, r.conversation_id) for r in recs)
    assert any(s2 < e1 and c1 != c2 for (s1, e1, c1), (s2, e2, c2) in zip(spans, spans[1:], strict=False))


def test_foreign_tokenizer_is_refused(vllm_server, tmp_path: Path) -> None:
    need(importlib.util.find_spec("tokenizers") is not None, "tokenizers not installed")
    foreign = build_wordpiece(tmp_path / "wordpiece")
    with pytest.raises(ConfigError, match="does not belong to the served model 'tiny'"):
        servemark.bench(servemark.BenchConfig(base_url=vllm_server.base_url, model="tiny",
                                              tokenizer=str(foreign), num_requests=2,
                                              output_dir=tmp_path / "foreign"))
    assert not (tmp_path / "foreign").exists()  # refused before anything was run or written
