"""The workload's file I/O, kept out of the pure generators: datasets, length lists, saved workloads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from servemark.errors import ConfigError
from servemark.workload.base import WorkItem, requests_of
from servemark.workload.dataset import Row, parse_dataset
from servemark.workload.lengths import LengthDist, parse_length_list


def read_text(path: str | Path, what: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}", "check the file") from None


def resolve_lengths(dist: LengthDist, flag: str) -> LengthDist:
    """Load a ``file:`` distribution's values; other kinds come back unchanged."""
    if dist.kind != "file" or dist.values or dist.path is None:
        return dist
    text = read_text(dist.path, f"{flag} file")
    return LengthDist("file", path=dist.path, values=parse_length_list(text, dist.path, flag))


def load_dataset(path: str | Path, fmt: str = "auto") -> tuple[Row, ...]:
    return tuple(parse_dataset(read_text(path, "dataset"), str(path), fmt))


def saved_rows(items: Iterable[WorkItem]) -> Iterable[dict[str, Any]]:
    """One JSON object per request, in the JSONL dataset format (replays exactly)."""
    for item in items:
        for spec in requests_of(item):
            row: dict[str, Any] = {}
            if spec.messages is not None:
                row["messages"] = list(spec.messages)
            else:
                row["prompt"] = spec.prompt
            row["input_len"] = spec.input_len
            row["output_len"] = spec.output_len
            if spec.conversation_id is not None:
                row["conversation_id"] = spec.conversation_id
                row["turn"] = spec.turn
            yield row


def save_jsonl(items: Sequence[WorkItem], path: str | Path) -> int:
    """Write ``items`` as a JSONL dataset; returns the number of rows written."""
    dest = Path(path).expanduser()
    n = 0
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("w", encoding="utf-8") as fh:
            for row in saved_rows(items):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    except OSError as exc:
        raise ConfigError(f"cannot write {dest}: {exc}", "choose a writable path") from None
    return n
