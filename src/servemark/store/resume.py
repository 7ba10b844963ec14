"""Resuming a run directory after a crash (``servemark bench --resume RUN_DIR``).

What a killed run leaves: ``summary.json`` (its config and the load points already finished,
replaced atomically) and ``requests.jsonl`` (every finished request, one unbuffered line each;
at most the last line torn). A resume truncates the torn tail, keeps every whole record, skips
the finished load points and sends only the requests of the interrupted point not yet recorded (requests a second Ctrl-C cancelled are sent again).
Because workloads are built from the recorded seed, the same request ids get the same prompts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from servemark.errors import ConfigError, ResultsError
from servemark.metrics.record import RequestRecord
from servemark.store.rundir import REQUESTS, load_summary


@dataclass
class ResumeState:
    """What a previous attempt of a run left behind."""

    run_dir: Path
    doc: dict[str, Any]
    records: list[RequestRecord]
    torn_bytes: int = 0
    done_labels: set[str] = field(default_factory=set)

    def records_of(self, label: str) -> list[RequestRecord]:
        return [r for r in self.records if r.load_point == label]

    @property
    def recorded_ids(self) -> set[int]:
        return {r.request_id for r in self.records}

    @property
    def time_offset_s(self) -> float:
        """Where the clock of the resumed attempt starts, so its records follow the old ones
        (the time the run was down is not counted in any load point's duration)."""
        return max((r.end_s for r in self.records), default=0.0)


def truncate_torn_tail(path: Path) -> int:
    """Cut whatever follows the last newline of ``path`` (a line torn by a crash) so that new
    records start on a line of their own; returns the number of bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        pos = size
        block = 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        if keep < size:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        return size - keep


def _read_records(path: Path) -> list[RequestRecord]:
    """Whole records only; a corrupt line in the middle is skipped (the resume goes on)."""
    recs: list[RequestRecord] = []
    if not path.exists():
        return recs
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                recs.append(RequestRecord.from_dict(orjson.loads(line)))
            except (orjson.JSONDecodeError, TypeError, KeyError):
                continue
    return recs


def _drop_cancelled(path: Path) -> list[RequestRecord]:
    """Requests cancelled by a second Ctrl-C never finished: remove their lines (atomically) so
    that the resume sends them again and each request id stays recorded once."""
    kept_lines, kept = [], []
    with open(path, "rb") as fh:
        for line in fh:
            try:
                rec = RequestRecord.from_dict(orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError, KeyError):
                continue
            if rec.error_kind != "cancelled":
                kept_lines.append(line)
                kept.append(rec)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.writelines(kept_lines)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return kept


def load_resume_state(run_dir: Path) -> ResumeState:
    """Read a run directory to continue it; raises a clear error if there is nothing to resume."""
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir} is not a directory", "pass the run directory to resume")
    doc = load_summary(run_dir)
    if doc.get("status") == "complete":
        raise ConfigError(f"{run_dir} is already complete", "nothing to resume; start a new run")
    if not isinstance(doc.get("config"), dict):
        raise ResultsError(f"{run_dir / 'summary.json'} has no config", "it cannot be resumed")
    torn = truncate_torn_tail(run_dir / REQUESTS)
    records = _read_records(run_dir / REQUESTS)
    if any(r.error_kind == "cancelled" for r in records):
        records = _drop_cancelled(run_dir / REQUESTS)
    points = [p for p in doc.get("points") or [] if isinstance(p, dict)]
    n = doc["config"].get("num_requests")
    if points and doc.get("status") == "interrupted":
        # a Ctrl-C summarizes the point it stopped, so the last one may be short of requests
        last = points[-1]
        sent = sum(int(last.get(k) or 0) for k in ("completed", "failed"))  # cancelled: resent
        if n is None or sent < n:
            points = points[:-1]
            doc = {**doc, "points": points}
    done = {str(p.get("label")) for p in points}
    return ResumeState(run_dir, doc, records, torn, done)


def config_from_doc(doc: dict[str, Any], run_dir: Path, api_key: str | None = None,
                    **overrides: Any) -> Any:
    """The BenchConfig a run was started with (its key is never stored: pass it again);
    ``overrides`` replace recorded fields (``base_url`` of a resumed run's new deployment)."""
    from servemark.spec import make_config

    data = {k: v for k, v in doc["config"].items() if k != "api_key_set"}
    data["output_dir"] = str(run_dir)
    if api_key is not None:
        data["api_key"] = api_key
    data.update(overrides)
    return make_config(**data)
