"""Datasets: JSONL/ShareGPT/CSV parsing, errors naming file and line, filters, seeded sampling,
and `workload save` files replaying exactly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from servemark.errors import ConfigError
from servemark.spec import WorkloadConfig
from servemark.workload.base import Conversation, requests_of
from servemark.workload.dataset import DatasetWorkload, detect_format, parse_dataset
from servemark.workload.factory import make_workload, workload_items
from servemark.workload.files import load_dataset, save_jsonl
from servemark.workload.lengths import parse_length
from servemark.workload.tokenizer import HFTokenizer


@pytest.fixture(scope="module")
def tok(tiny_model) -> HFTokenizer:
    return HFTokenizer(str(tiny_model))


def jsonl(*objs: object) -> str:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs) + "\n"


def test_jsonl_prompts_and_messages() -> None:
    rows = parse_dataset(jsonl({"prompt": "hi there", "output_len": 7}, "",
                               {"messages": [{"role": "user", "content": "q"}]}), "d.jsonl")
    assert [r.prompt for r in rows] == ["hi there", None]
    assert rows[0].output_len == 7 and rows[0].where == "d.jsonl:1"
    assert rows[1].messages == ({"role": "user", "content": "q"},) and rows[1].where == "d.jsonl:3"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"prompt": "a"', r"d.jsonl:2: not valid JSON"),
        ("[1, 2]", r"d.jsonl:2: expected a JSON object"),
        ('{"text": "a"}', r"d.jsonl:2: needs exactly one of 'prompt' or 'messages'"),
        ('{"prompt": "a", "messages": []}', r"d.jsonl:2: needs exactly one"),
        ('{"prompt": ""}', r"d.jsonl:2: 'prompt' must be a non-empty string"),
        ('{"prompt": "a", "output_len": 0}', r"d.jsonl:2: 'output_len' must be a positive integer"),
        ('{"prompt": "a", "output_len": "5"}', r"d.jsonl:2: 'output_len' must be a positive integer"),
        ('{"messages": [{"role": "user"}]}', r"d.jsonl:2: each message needs string 'role' and 'content'"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', r"d.jsonl:2: unknown message role 'bot'"),
        ('{"messages": []}', r"d.jsonl:2: 'messages' must be a non-empty list"),
    ],
)
def test_malformed_jsonl_names_file_and_line(line: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_dataset(jsonl({"prompt": "fine"}, line), "d.jsonl", "jsonl")


def test_sharegpt_array_and_jsonl() -> None:
    entries = [
        {"id": "a", "conversations": [{"from": "human", "value": "What is a GPU?"},
                                      {"from": "gpt", "value": "A graphics processor."}]},
        {"id": "b", "conversations": [{"from": "human", "value": "alone"}]},  # no reply: skipped
        {"id": "c", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},
        {"id": "d", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    ]
    for text in (json.dumps(entries), jsonl(*entries)):
        rows = parse_dataset(text, "sg.json")
        assert [(r.prompt, r.reference) for r in rows] == [
            ("What is a GPU?", "A graphics processor."), ("Hi", "Hello")]
    with pytest.raises(ConfigError, match=r"sg.json entry 1: missing 'conversations' list"):
        parse_dataset(json.dumps([entries[0], {"id": "x"}]), "sg.json")
    with pytest.raises(ConfigError, match=r"sg.jsonl:2: not valid JSON"):
        parse_dataset(jsonl(entries[0], "{oops"), "sg.jsonl", "sharegpt")
    with pytest.raises(ConfigError, match=r"sg.json:\d+: not valid JSON"):
        parse_dataset("[\n" + json.dumps(entries[0]) + ",\n{bad}\n]", "sg.json")


def test_csv_rows_and_errors() -> None:
    rows = parse_dataset('prompt,output_len\n"Hello, world",5\nplain,\n', "d.csv")
    assert [(r.prompt, r.output_len) for r in rows] == [("Hello, world", 5), ("plain", None)]
    with pytest.raises(ConfigError, match=r"d.csv:3: 'output_len' must be a positive integer, got 'many'"):
        parse_dataset("prompt,output_len\na,1\nb,many\n", "d.csv")
    with pytest.raises(ConfigError, match=r"d.csv:2: 'prompt' is empty"):
        parse_dataset("prompt\n\"\"\n", "d.csv")
    with pytest.raises(ConfigError, match=r"d.csv:1: CSV needs a header with a 'prompt' column"):
        parse_dataset("text\na\n", "d.csv")
    with pytest.raises(ConfigError, match=r"d.csv:2: more fields than the header has"):
        parse_dataset("prompt\na,b\n", "d.csv")


def test_format_detection() -> None:
    assert detect_format("x.csv", "prompt\n") == "csv"
    assert detect_format("x.json", "[{}]") == "sharegpt"
    assert detect_format("x.jsonl", '{"conversations": []}\n') == "sharegpt"
    assert detect_format("x.jsonl", '{"prompt": "a"}\n') == "jsonl"


def test_empty_or_missing_file(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match="e.jsonl has no usable rows"):
        load_dataset(tmp_path / "e.jsonl")
    with pytest.raises(ConfigError, match="dataset .*nope.jsonl does not exist"):
        load_dataset(tmp_path / "nope.jsonl")


def rows_of(n: int) -> str:
    # prompt i is "word " * (i + 1): its token count grows with i
    return jsonl(*({"prompt": "number " * (i + 1), "output_len": i + 1} for i in range(n)))


def test_sampling_is_seeded_and_keeps_file_order(tok) -> None:
    rows = parse_dataset(rows_of(50), "d.jsonl")
    w = DatasetWorkload(rows, parse_length(16))
    a = w.build(tok, 10, random.Random(1))
    assert a == w.build(tok, 10, random.Random(1))
    assert a != w.build(tok, 10, random.Random(2))
    outs = [s.output_len for s in a]
    assert outs == sorted(outs) and len(set(outs)) == 10  # a subset, in file order
    for s in a:
        assert s.input_len == len(tok.encode(s.prompt))
    # asking for all rows (or more) replays the file in order, repeating it when needed
    assert [s.output_len for s in w.build(tok, 60, random.Random(3))] == [i % 50 + 1 for i in range(60)]


def test_length_filters(tok) -> None:
    rows = parse_dataset(rows_of(40), "d.jsonl")
    w = DatasetWorkload(rows, parse_length(16), min_input_len=10, max_input_len=20)
    specs = w.build(tok, 100, random.Random(0))
    assert specs and all(10 <= s.input_len <= 20 for s in specs)
    assert {s.input_len for s in specs} == {n for r in rows if 10 <= (n := len(tok.encode(r.prompt))) <= 20}
    with pytest.raises(ConfigError, match=r"no rows of dataset have input lengths within \[500, ∞\]"):
        DatasetWorkload(rows, parse_length(16), min_input_len=500).build(tok, 5, random.Random(0))


def test_output_len_from_row_reference_or_distribution(tok) -> None:
    rows = parse_dataset(jsonl(
        {"prompt": "a b c", "output_len": 9},
        {"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "one two three"}]},
    ).split("\n", 1)[0] + "\n", "d.jsonl")
    assert DatasetWorkload(rows, parse_length(5)).build(tok, 1, random.Random(0))[0].output_len == 9
    sg = parse_dataset(jsonl({"conversations": [{"from": "human", "value": "x"},
                                                {"from": "gpt", "value": "one two three"}]}), "s.jsonl")
    spec = DatasetWorkload(sg, parse_length(5)).build(tok, 1, random.Random(0))[0]
    assert spec.output_len == len(tok.encode_body("one two three"))
    plain = parse_dataset(jsonl({"prompt": "p"}), "p.jsonl")
    assert DatasetWorkload(plain, parse_length(5)).build(tok, 1, random.Random(0))[0].output_len == 5


def test_messages_need_chat_api_and_prompts_wrap_for_chat(tok) -> None:
    rows = parse_dataset(jsonl({"messages": [{"role": "user", "content": "q"}]}), "m.jsonl")
    with pytest.raises(ConfigError, match=r"m.jsonl:1: chat 'messages' need the chat API") as exc:
        DatasetWorkload(rows, parse_length(5)).build(tok, 1, random.Random(0))
    assert exc.value.hint == "add --api chat"
    p = parse_dataset(jsonl({"prompt": "hello"}), "p.jsonl")
    spec = DatasetWorkload(p, parse_length(5), api="chat").build(tok, 1, random.Random(0))[0]
    assert spec.messages == ({"role": "user", "content": "hello"},) and spec.prompt is None
    assert spec.input_len == tok.count_chat(spec.messages)


@pytest.mark.parametrize(
    "kw",
    [
        {"workload": "random", "input_len": "uniform:20:60", "output_len": "normal:30:5"},
        {"workload": "chat", "input_len": 80},
        {"workload": "multiturn", "input_len": 12, "output_len": 6, "turns": 3},
        {"workload": "prefix", "input_len": 70, "prefix_len": 30},
    ],
)
def test_saved_workload_replays_exactly(tok, tmp_path: Path, kw: dict) -> None:
    cfg = WorkloadConfig(seed=4, **kw)
    items = workload_items(cfg, tok, 5)
    path = tmp_path / "w.jsonl"
    assert save_jsonl(items, path) == sum(len(requests_of(i)) for i in items)
    replay_cfg = WorkloadConfig(workload="dataset", dataset=path, api=cfg.api, seed=99)
    replayed = make_workload(replay_cfg).build(tok, len(items), random.Random(99))
    assert replayed == items
    if kw["workload"] == "multiturn":
        assert all(isinstance(c, Conversation) and len(c.turns) == 3 for c in replayed)
