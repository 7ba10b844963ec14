"""Dataset workloads (pure: text in, rows out): JSONL, ShareGPT, CSV; filtering and seeded sampling.

JSONL rows are ``{"prompt": ..., "output_len": ...}`` or ``{"messages": [...]}``; rows written by
``servemark workload save`` also carry ``input_len`` and, for conversations, ``conversation_id``
and ``turn`` (rows of one conversation are replayed as its turns, in order). ShareGPT entries use
the first human turn as the prompt and the reply's token count as the output length. A malformed
row is an error naming the file and line (entry, for a JSON array).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from servemark.client.openai import RequestSpec
from servemark.errors import ConfigError
from servemark.workload.base import Conversation, WorkItem
from servemark.workload.lengths import LengthDist
from servemark.workload.tokenizer import Tokenizer

FORMATS = ("auto", "jsonl", "sharegpt", "csv")
ROLES = ("system", "user", "assistant", "tool", "developer")


@dataclass(frozen=True, slots=True)
class Row:
    """One dataset entry; ``where`` is ``file:line`` for messages."""

    where: str
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    output_len: int | None = None
    reference: str | None = None  # ShareGPT: the reply whose token count is the output length
    input_len: int | None = None
    conversation_id: int | None = None
    turn: int | None = None


def _bad(where: str, what: str, hint: str = "see the dataset formats in the README") -> ConfigError:
    return ConfigError(f"{where}: {what}", hint)


def _pos_int(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(where, f"{key!r} must be a positive integer, got {value!r}")
    return value


def _messages(value: Any, where: str) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _bad(where, "'messages' must be a non-empty list")
    out = []
    for m in value:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise _bad(where, f"each message needs string 'role' and 'content', got {str(m)[:60]}")
        if m["role"] not in ROLES:
            raise _bad(where, f"unknown message role {m['role']!r}")
        out.append({"role": m["role"], "content": m["content"]})
    return tuple(out)


def row_from_object(obj: Any, where: str) -> Row:
    """A JSONL/CSV object → Row; raises a ConfigError naming ``where`` when malformed."""
    if not isinstance(obj, dict):
        raise _bad(where, "expected a JSON object")
    prompt, messages = obj.get("prompt"), obj.get("messages")
    if (prompt is None) == (messages is None):
        raise _bad(where, "needs exactly one of 'prompt' or 'messages'")
    if prompt is not None and (not isinstance(prompt, str) or not prompt):
        raise _bad(where, "'prompt' must be a non-empty string")
    conv = obj.get("conversation_id")
    if conv is not None and (isinstance(conv, bool) or not isinstance(conv, int)):
        raise _bad(where, "'conversation_id' must be an integer")
    return Row(where, prompt=prompt,
               messages=None if messages is None else _messages(messages, where),
               output_len=_pos_int(obj, "output_len", where),
               input_len=_pos_int(obj, "input_len", where),
               conversation_id=conv, turn=_pos_int(obj, "turn", where))


def parse_jsonl(text: str, source: str) -> list[Row]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _bad(where, f"not valid JSON ({exc.msg})") from None
        rows.append(row_from_object(obj, where))
    return rows


def parse_csv(text: str, source: str) -> list[Row]:
    """CSV with a header: a ``prompt`` column, optionally ``output_len``."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "prompt" not in reader.fieldnames:
        raise _bad(f"{source}:1", "CSV needs a header with a 'prompt' column")
    rows = []
    for rec in reader:
        where = f"{source}:{reader.line_num}"
        if None in rec:
            raise _bad(where, "more fields than the header has")
        obj: dict[str, Any] = {"prompt": rec["prompt"] or None}
        if (rec.get("output_len") or "").strip():
            try:
                obj["output_len"] = int(rec["output_len"])
            except ValueError:
                raise _bad(where, f"'output_len' must be a positive integer, got {rec['output_len']!r}") from None
        if obj["prompt"] is None:
            raise _bad(where, "'prompt' is empty")
        rows.append(row_from_object(obj, where))
    return rows


def _sharegpt_row(entry: Any, where: str) -> Row | None:
    if not isinstance(entry, dict):
        raise _bad(where, "expected a JSON object with 'conversations'")
    turns = entry.get("conversations", entry.get("conversation"))
    if not isinstance(turns, list):
        raise _bad(where, "missing 'conversations' list")
    for t in turns:
        if not (isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("value"), str)):
            raise _bad(where, "each turn needs string 'from' and 'value'")
    # like the published ShareGPT benchmarks: a prompt needs a human turn followed by a reply
    if len(turns) < 2 or turns[0]["from"] not in ("human", "user") or not turns[0]["value"]:
        return None
    return Row(where, prompt=turns[0]["value"], reference=turns[1]["value"])


def parse_sharegpt(text: str, source: str) -> list[Row]:
    """A ShareGPT JSON array, or one ShareGPT entry per line; unusable entries are skipped."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _bad(f"{source}:{exc.lineno}", f"not valid JSON ({exc.msg})") from None
        found = [_sharegpt_row(e, f"{source} entry {i}") for i, e in enumerate(entries)]
    else:
        found = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _bad(f"{source}:{lineno}", f"not valid JSON ({exc.msg})") from None
                found.append(_sharegpt_row(obj, f"{source}:{lineno}"))
    return [r for r in found if r is not None]


def detect_format(source: str, text: str) -> str:
    """``csv`` by extension; ShareGPT when the first entry has ``conversations``; else JSONL."""
    if source.lower().endswith(".csv"):
        return "csv"
    head = text.lstrip()[:4096]
    if head.startswith("[") or '"conversations"' in head.split("\n", 1)[0]:
        return "sharegpt"
    return "jsonl"


def parse_dataset(text: str, source: str, fmt: str = "auto") -> list[Row]:
    fmt = detect_format(source, text) if fmt == "auto" else fmt
    parser = {"jsonl": parse_jsonl, "sharegpt": parse_sharegpt, "csv": parse_csv}[fmt]
    rows = parser(text, source)
    if not rows:
        raise ConfigError(f"{source} has no usable rows ({fmt})", "check the file and --dataset-format")
    return rows


Unit = tuple[Row, ...]  # one request, or the turns of one conversation


def group_units(rows: Sequence[Row]) -> list[Unit]:
    """Rows with a ``conversation_id`` become one unit per conversation (turns in order)."""
    units: list[Unit] = []
    convs: dict[int, list[Row]] = {}
    for row in rows:
        if row.conversation_id is None:
            units.append((row,))
        elif row.conversation_id in convs:
            convs[row.conversation_id].append(row)
        else:
            convs[row.conversation_id] = [row]
            units.append(())  # placeholder keeps the conversation at its first row's position
    it = iter(convs.values())
    return [u if u else tuple(sorted(next(it), key=lambda r: r.turn or 0)) for u in units]


@dataclass(frozen=True)
class DatasetWorkload:
    """Rows of a dataset: filtered by input length, ``n`` sampled with the seed (file order kept)."""

    rows: tuple[Row, ...]
    output_len: LengthDist
    api: str = "completions"
    min_input_len: int | None = None
    max_input_len: int | None = None
    source: str = "dataset"
    name: str = "dataset"

    def _input_len(self, tok: Tokenizer, row: Row) -> int:
        if row.input_len is not None:  # written by `workload save` with the same definition
            return row.input_len
        if row.messages is not None:
            return tok.count_chat(row.messages)
        if self.api == "chat":
            return tok.count_chat([{"role": "user", "content": row.prompt or ""}])
        return len(tok.encode(row.prompt or ""))

    def _spec(self, tok: Tokenizer, row: Row, rid: int, rng: random.Random,
              cid: int | None, turn: int | None) -> RequestSpec:
        if row.messages is not None and self.api != "chat":
            raise ConfigError(f"{row.where}: chat 'messages' need the chat API", "add --api chat")
        olen = row.output_len
        if olen is None and row.reference is not None:
            olen = max(1, len(tok.encode_body(row.reference)))
        if olen is None:
            olen = self.output_len.sample(rng)
        messages = row.messages
        if messages is None and self.api == "chat":
            messages = ({"role": "user", "content": row.prompt or ""},)
        return RequestSpec(rid, self.api, prompt=None if self.api == "chat" else row.prompt,
                           messages=messages, input_len=self._input_len(tok, row),
                           output_len=olen, conversation_id=cid, turn=turn)

    def build(self, tok: Tokenizer, n: int, rng: random.Random, first_id: int = 0) -> list[WorkItem]:
        units = group_units(self.rows)
        lo, hi = self.min_input_len, self.max_input_len
        if lo is not None or hi is not None:
            def fits(unit: Unit) -> bool:
                lens = [self._input_len(tok, r) for r in unit]
                return (lo is None or min(lens) >= lo) and (hi is None or max(lens) <= hi)
            units = [u for u in units if fits(u)]
            if not units:
                raise ConfigError(f"no rows of {self.source} have input lengths within "
                                  f"[{lo or 1}, {hi or '∞'}] tokens",
                                  "widen --min-input-len / --max-input-len")
        if n < len(units):
            chosen = [units[i] for i in sorted(rng.sample(range(len(units)), n))]
        else:  # the whole file in order (an exact replay), repeated when more are needed
            chosen = [units[i % len(units)] for i in range(n)]
        out: list[WorkItem] = []
        rid = first_id
        for unit in chosen:
            if len(unit) == 1 and unit[0].conversation_id is None:
                out.append(self._spec(tok, unit[0], rid, rng, None, None))
                rid += 1
                continue
            cid = rid
            turns = []
            for k, row in enumerate(unit, 1):
                turns.append(self._spec(tok, row, rid, rng, cid, k))
                rid += 1
            out.append(Conversation(cid, tuple(turns)))
        return out
