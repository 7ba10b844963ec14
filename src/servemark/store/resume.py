"""Resuming a run directory after a crash (``servemark bench --resume RUN_DIR``).

What a killed run leaves: ``summary.json`` (its config and the load points already finished,
replaced atomically) and ``requests.jsonl`` (every finished request, one unbuffered line each;
at most the last line torn). A resume truncates the torn tail, keeps every whole record, skips
the finished load points and sends only the requests of the interrupted point not yet recorded (requests a second Ctrl-C cancelled are sent again).
Because workloads are built from the recorded seed, the same request ids get the same prompts.
The records are read in one streaming pass that keeps, per unfinished load point, the ids it
sent (a bitmap), a few counts and its accumulator — never the records (a million-request run
resumes in bounded memory).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from servemark.errors import ConfigError, ResultsError
from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.record import RequestRecord
from servemark.store.rundir import REQUESTS, load_summary


class IdSet:
    """Request ids (small non-negative integers) as a bitmap of bytes: a million ids in ~1 MB
    instead of ~60 MB for a set of ints."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def add(self, i: int) -> None:
        if i < 0:
            raise ValueError("request ids are non-negative")
        if i >= len(self._bits):
            self._bits.extend(bytes(max(i + 1 - len(self._bits), len(self._bits))))
        self._bits[i] = 1

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and 0 <= i < len(self._bits) and self._bits[i] == 1


@dataclass
class PriorPoint:
    """What an earlier attempt recorded of a load point not yet finished: the ids it sent, the
    counts a resume needs, and the point's accumulator to continue from (not the records)."""

    label: str
    acc: PointAccumulator
    ids: IdSet = field(default_factory=IdSet)
    records: int = 0
    first_requests: int = 0  # records that open an item (turn None or 0): count against -n
    max_id: int = -1
    start_min: float = math.inf
    end_max: float = -math.inf

    def add(self, rec: RequestRecord) -> None:
        self.acc.add(rec)
        self.ids.add(rec.request_id)
        self.records += 1
        self.first_requests += rec.turn in (None, 0)
        self.max_id = max(self.max_id, rec.request_id)
        self.start_min = min(self.start_min, rec.start_s)
        self.end_max = max(self.end_max, rec.end_s)

    @property
    def elapsed_s(self) -> float:
        return self.end_max - self.start_min if self.records else 0.0


@dataclass
class ResumeState:
    """What a previous attempt of a run left behind, read in one streaming pass."""

    run_dir: Path
    doc: dict[str, Any]
    records_kept: int = 0
    torn_bytes: int = 0
    done_labels: set[str] = field(default_factory=set)
    priors: dict[str, PriorPoint] = field(default_factory=dict)
    time_offset_s: float = 0.0
    """Where the clock of the resumed attempt starts, so its records follow the old ones (the
    time the run was down is not counted in any load point's duration)."""

    def prior(self, label: str) -> PriorPoint | None:
        """The recorded part of an unfinished load point (None: nothing recorded)."""
        return self.priors.get(label)


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


def _drop_cancelled(path: Path) -> None:
    """Requests cancelled by a second Ctrl-C never finished: remove their lines (streamed to a
    temporary file, then renamed over) so that the resume sends them again and each request id
    stays recorded once."""
    tmp = path.with_name(path.name + ".tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for line in src:
            try:
                rec = RequestRecord.from_dict(orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError, KeyError):
                continue
            if rec.error_kind != "cancelled":
                dst.write(line)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)


def _scan(path: Path, state: ResumeState, threshold_tps: float | None) -> bool:
    """One pass over the whole records (a corrupt line in the middle is skipped: the resume goes
    on): fill ``state``; True when cancelled requests were found (they count as not sent)."""
    cancelled = False
    if not path.exists():
        return cancelled
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = RequestRecord.from_dict(orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError, KeyError):
                continue
            if rec.error_kind == "cancelled":
                cancelled = True
                continue
            state.records_kept += 1
            state.time_offset_s = max(state.time_offset_s, rec.end_s)
            if rec.load_point in state.done_labels:
                continue
            prior = state.priors.get(rec.load_point)
            if prior is None:
                acc = PointAccumulator(threshold_tps, by_endpoint=True)
                prior = state.priors[rec.load_point] = PriorPoint(rec.load_point, acc)
            prior.add(rec)
    return cancelled


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
    state = ResumeState(run_dir, doc, torn_bytes=torn, done_labels=done)
    if _scan(run_dir / REQUESTS, state, doc["config"].get("threshold_tps")):
        _drop_cancelled(run_dir / REQUESTS)
    return state


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
