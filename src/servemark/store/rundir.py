"""A run directory: ``requests.jsonl`` (one record per line, flushed as each request completes),
``summary.json`` (provenance, config, one summary per load point; rewritten atomically after each
point) and ``summary.csv`` (one row per load point).

Readers tolerate a torn last line (a crash mid-write) and report it instead of failing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from servemark.errors import ResultsError
from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import LATENCY_METRICS, PointSummary

REQUESTS = "requests.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
SCHEMA = "servemark.run/1"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def default_run_dir(root: Path, model: str, now: datetime | None = None) -> Path:
    """``ROOT/YYYYmmdd-HHMMSS-<model>``, made unique with a suffix if it already exists."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{_slug(Path(model).name or model)}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


class RunWriter:
    """Owns the files of one run while it is being measured."""

    def __init__(self, path: Path, resume: bool = False) -> None:
        self.path = path
        if not resume and (path / REQUESTS).exists():
            raise ResultsError(
                f"{path} already holds results ({REQUESTS})",
                "choose a new --output-dir (or leave it out for a fresh timestamped directory)",
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._requests: IO[bytes] = open(path / REQUESTS, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise ResultsError(f"cannot create results in {path}: {exc.strerror}",
                               "pick a writable --output-dir") from exc
        self._csv_header_written = False

    def append(self, rec: RequestRecord) -> None:
        """One record, one unbuffered write: a crash never loses a finished request."""
        self.append_lines(orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def append_lines(self, data: bytes) -> None:
        """Records already serialized (newline-terminated JSON lines, as workers send them)."""
        line = memoryview(data)
        try:
            while line:  # an unbuffered write may take only part of the line (disk filling up)
                written = self._requests.write(line)
                if not written:
                    raise OSError(28, "No space left on device")
                line = line[written:]
        except OSError as exc:
            raise ResultsError(f"cannot write {self.path / REQUESTS}: {exc.strerror}",
                               "free disk space; records written so far are kept") from exc

    def write_summary(self, doc: dict[str, Any]) -> None:
        """Atomically replace summary.json (write to a temp file, fsync, rename)."""
        tmp = self.path / (SUMMARY_JSON + ".tmp")
        data = json.dumps(doc, indent=2, default=str).encode()
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path / SUMMARY_JSON)
        except OSError as exc:
            raise ResultsError(f"cannot write {self.path / SUMMARY_JSON}: {exc.strerror}",
                               "free disk space; requests.jsonl is intact") from exc

    def write_csv(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite summary.csv with one row per finished load point."""
        if not rows:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        try:
            (self.path / SUMMARY_CSV).write_text(buf.getvalue())
        except OSError as exc:
            raise ResultsError(f"cannot write {self.path / SUMMARY_CSV}: {exc.strerror}",
                               "free disk space; requests.jsonl is intact") from exc

    def close(self) -> None:
        self._requests.close()


def csv_row(summary: PointSummary, model: str, api: str) -> dict[str, Any]:
    """The flat CSV row of a load point (latencies in milliseconds, as tables show them)."""
    row: dict[str, Any] = {
        "model": model,
        "api": api,
        "load_point": summary.label,
        "concurrency": summary.concurrency,
        "request_rate": summary.request_rate,
        "completed": summary.completed,
        "failed": summary.failed,
        "duration_s": summary.duration_s,
        "requests_per_s": summary.requests_per_s,
        "input_tokens_per_s": summary.input_tokens_per_s,
        "output_tokens_per_s": summary.output_tokens_per_s,
        "total_tokens_per_s": summary.total_tokens_per_s,
        "num_gpus": summary.num_gpus,
        "input_tokens_per_s_per_gpu": summary.input_tokens_per_s_per_gpu,
        "output_tokens_per_s_per_gpu": summary.output_tokens_per_s_per_gpu,
        "output_tokens_per_s_per_request": summary.output_tokens_per_s_per_request,
        "threshold_tps": summary.threshold_tps,
        "slow_requests": summary.slow_requests,
    }
    for metric in LATENCY_METRICS:
        dist = getattr(summary, metric)
        name = metric[:-2]
        for stat in ("mean", "p50", "p90", "p95", "p99", "min", "max", "std"):
            value = getattr(dist, stat)
            row[f"{name}_{stat}_ms"] = None if value is None else value * 1000.0
    return row


@dataclass
class LoadedRecords:
    records: list[RequestRecord]
    torn_lines: int


def iter_records(path: Path) -> Iterator[RequestRecord | None]:
    """Records of a requests.jsonl; ``None`` for a line that does not parse (torn or corrupt)."""
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield RequestRecord.from_dict(orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError):
                yield None


def load_records(run_dir: Path) -> LoadedRecords:
    path = run_dir / REQUESTS
    if not path.exists():
        raise ResultsError(f"{run_dir} has no {REQUESTS}", "pass a servemark run directory")
    recs, torn = [], 0
    for rec in iter_records(path):
        if rec is None:
            torn += 1
        else:
            recs.append(rec)
    return LoadedRecords(recs, torn)


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / SUMMARY_JSON
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise ResultsError(f"{run_dir} has no {SUMMARY_JSON}", "pass a servemark run directory") from exc
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not valid JSON: {exc}", "re-run or restore the file") from exc


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
