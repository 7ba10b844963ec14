"""Token-exact workloads on two differently built tokenizers (byte-level BPE with BOS, and a
lower-casing WordPiece with [CLS] … [SEP]); lengths are re-measured with transformers directly."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from servemark.errors import ConfigError
from servemark.spec import WorkloadConfig
from servemark.workload.base import Conversation, requests_of
from servemark.workload.chat import ChatWorkload, question_set
from servemark.workload.factory import workload_items
from servemark.workload.lengths import parse_length
from servemark.workload.multiturn import MultiTurnWorkload
from servemark.workload.prefix import PrefixWorkload
from servemark.workload.synthetic import RandomWorkload
from servemark.workload.tokenizer import MIN_DECODED_CHARS, HFTokenizer
from tests.conftest import need
from tests.unit.wordpiece import build_wordpiece

LENGTHS = [64, 100, 127, 128, 255, 256, 511, 512, 777, 1000, 1024, 2047, 2048, 3000, 4095, 4096]


@pytest.fixture(scope="module", params=["bpe-tiny", "wordpiece"])
def tok_dir(request, tmp_path_factory) -> Path:
    if request.param == "bpe-tiny":
        return Path(request.getfixturevalue("tiny_model"))
    need(importlib.util.find_spec("tokenizers") is not None, "tokenizers not installed")
    return build_wordpiece(tmp_path_factory.mktemp("wordpiece"))


@pytest.fixture(scope="module")
def tok(tok_dir: Path) -> HFTokenizer:
    return HFTokenizer(str(tok_dir))


@pytest.fixture(scope="module")
def hf(tok_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)


def completion_len(hf, text: str) -> int:
    return len(hf(text, add_special_tokens=True)["input_ids"])


def chat_len(hf, messages) -> int:
    out = hf.apply_chat_template(list(messages), tokenize=True, add_generation_prompt=True)
    return len(out["input_ids"] if hasattr(out, "keys") else out)


def fixed(n: int):
    return parse_length(n)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_random_prompts_exact_for_many_lengths(tok, hf, api: str) -> None:
    overhead = completion_len(hf, "") if api == "completions" else chat_len(hf, [{"role": "user", "content": ""}])
    lengths = list(range(overhead + 1, overhead + 41)) + LENGTHS
    for n in lengths:
        items = RandomWorkload(fixed(n), fixed(8), api).build(tok, 2, random.Random(n))
        for spec in items:
            assert spec.input_len == n
            got = completion_len(hf, spec.prompt) if api == "completions" else chat_len(hf, spec.messages)
            assert got == n, (api, n, got)


def test_too_short_for_the_format_is_a_clear_error(tok, hf) -> None:
    overhead = completion_len(hf, "")
    with pytest.raises(ConfigError, match=f"the format alone takes {overhead} tokens"):
        RandomWorkload(fixed(overhead), fixed(8)).build(tok, 1, random.Random(0))


def test_candidates_exclude_short_and_special_tokens(tok, hf) -> None:
    cands = tok.candidate_ids()
    special = set(hf.all_special_ids)
    assert cands and not special & set(cands)
    assert all(len(hf.decode([i])) > 2 for i in cands)
    # the filter really removes something: the vocabulary has short tokens (bytes, letters)
    short = [i for i in range(len(hf)) if len(hf.decode([i])) < MIN_DECODED_CHARS]
    assert short and not set(short) & set(cands)


@pytest.mark.parametrize("n", [20, 64, 333, 2048, 4096])
def test_chat_questions_stacked_to_exact_length(tok, hf, n: int) -> None:
    items = ChatWorkload(fixed(n), fixed(8)).build(tok, 3, random.Random(n))
    questions = question_set()
    for spec in items:
        assert spec.api == "chat" and chat_len(hf, spec.messages) == n == spec.input_len
        content = spec.messages[0]["content"]
        if n >= 333:  # long prompts hold whole questions of our set, replicated for 4k
            norm = content.lower()
            assert sum(q.lower() in norm for q in questions) >= 3
    if n == 4096:
        assert max(items[0].messages[0]["content"].lower().count(q.lower()) for q in questions) >= 2


def test_prefix_prompts_share_exact_prefix(tok, hf) -> None:
    w = PrefixWorkload(parse_length("uniform:150:300"), fixed(8), prefix_len=100)
    items = w.build(tok, 12, random.Random(3))
    prompts = [s.prompt for s in items]
    prefix = prompts[0][: prompts[0].index("\n") + 1]
    assert len(hf(prefix, add_special_tokens=False)["input_ids"]) == 100
    head = hf(prefix)["input_ids"]
    if head[-1] == hf.sep_token_id:  # [CLS] … [SEP]: the shared part is everything before [SEP]
        head = head[:-1]
    for spec, text in zip(items, prompts, strict=True):
        assert text.startswith(prefix)
        ids = hf(text)["input_ids"]
        assert len(ids) == spec.input_len and ids[: len(head)] == head
    assert len(set(prompts)) == len(prompts)  # unique suffixes


def test_prefix_longer_than_input_is_a_clear_error(tok) -> None:
    with pytest.raises(ConfigError, match="no room for a suffix"):
        PrefixWorkload(fixed(90), fixed(8), prefix_len=100).build(tok, 1, random.Random(0))


def test_multiturn_histories_grow_by_one_exchange(tok, hf) -> None:
    convs = MultiTurnWorkload(fixed(24), fixed(12), turns=4).build(tok, 3, random.Random(2), first_id=10)
    assert [c.conversation_id for c in convs] == [10, 14, 18]
    for conv in convs:
        assert isinstance(conv, Conversation)
        assert [t.turn for t in conv.turns] == [1, 2, 3, 4]
        assert [t.request_id for t in conv.turns] == list(range(conv.conversation_id, conv.conversation_id + 4))
        prev = None
        for t in conv.turns:
            assert t.conversation_id == conv.conversation_id and t.api == "chat"
            assert t.input_len == chat_len(hf, t.messages)
            user = t.messages[-1]
            assert user["role"] == "user"
            assert len(hf(user["content"], add_special_tokens=False)["input_ids"]) == 24
            if prev is not None:
                assert t.messages[: len(prev.messages)] == prev.messages  # whole history resent
                assert [m["role"] for m in t.messages[len(prev.messages):]] == ["assistant", "user"]
                reply = t.messages[-2]["content"]
                assert len(hf(reply, add_special_tokens=False)["input_ids"]) == prev.output_len
                assert t.input_len > prev.input_len + 24 + 12 - 1
            prev = t
    # same template overhead per exchange: every conversation grows by the same steps
    steps = {tuple(b.input_len - a.input_len for a, b in zip(c.turns, c.turns[1:], strict=False)) for c in convs}
    assert len(steps) == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"workload": "random", "input_len": "uniform:20:80"},
        {"workload": "random", "input_len": "normal:60:10", "api": "chat"},
        {"workload": "chat", "input_len": "normal:200:40"},
        {"workload": "multiturn", "input_len": 16, "output_len": "uniform:4:9", "turns": 2},
        {"workload": "prefix", "input_len": 90, "prefix_len": 40},
    ],
)
def test_same_seed_same_workload(tok, kw: dict) -> None:
    def build(seed: int):
        return workload_items(WorkloadConfig(seed=seed, **kw), tok, 6)

    a, b, c = build(7), build(7), build(8)
    assert a == b
    assert a != c
    assert all(s.input_len is not None for i in a for s in requests_of(i))
