"""Synthetic run directories for report/catalog/compare tests: real files written by the real
RunWriter and summaries by the real ``summarize``, from records whose timings we choose."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import summarize
from servemark.store.rundir import SCHEMA, RunWriter, csv_row


def synthetic_records(point: str, n: int, ttft_s: float, itl_s: float, rng: np.random.Generator,
                      output_tokens: int = 16, spread: float = 0.2, t_start: float = 0.0,
                      endpoint: str = "http://127.0.0.1:1", failures: int = 0,
                      error_text: str = "boom") -> list[RequestRecord]:
    """Sequential requests whose TTFT and ITL are lognormal around the given medians."""
    recs, t = [], t_start
    for i in range(n):
        first = float(ttft_s * rng.lognormal(0.0, spread))
        gaps = itl_s * rng.lognormal(0.0, spread, output_tokens - 1)
        chunks = [first, *(first + np.cumsum(gaps)).tolist()]
        end = t + chunks[-1] + 0.001
        recs.append(RequestRecord(
            request_id=i, load_point=point, endpoint=endpoint, api="completions", start_s=t,
            end_s=end, chunk_times_s=chunks, requested_input_tokens=32, requested_output_tokens=output_tokens,
            input_tokens=32, output_tokens=output_tokens, token_source="usage", status=200, ok=True,
            finish_reason="length", output_chars=output_tokens * 4))
        t = end
    for j in range(failures):
        recs.append(RequestRecord(
            request_id=n + j, load_point=point, endpoint=endpoint, api="completions", start_s=t,
            end_s=t + 0.01, status=500, ok=False, error_kind="http_status", error=error_text))
        t += 0.01
    return recs


def write_run(path: Path, points: dict[str, list[RequestRecord]], model: str = "tiny",
              started_at: str = "2025-01-15T10:00:00+00:00", extra: dict | None = None) -> Path:
    """A complete run directory (requests.jsonl, summary.json, summary.csv)."""
    writer = RunWriter(path)
    summaries = []
    for label, recs in points.items():
        for r in recs:
            writer.append(r)
        conc = int(label.split("=")[1]) if label.startswith("c=") else None
        summaries.append(summarize(recs, label, conc, None))
    doc = {
        "schema": SCHEMA, "status": "complete", "partial": False, "started_at": started_at,
        "finished_at": started_at, "model": model, "tokenizer": "synthetic",
        "provenance": {"servemark_version": "test", "command": ["servemark", "bench"], "host": "h",
                       "platform": "p", "python": "3", "cpu_count": 2, "packages": {}},
        "endpoint": {"base_url": "http://127.0.0.1:1", "models": [model], "server_version": "x",
                     "max_model_len": 2048},
        "config": {"api": "completions", "input_len": 32, "output_len": 16,
                   "concurrency": [1], "num_requests": 10, "warmup": 0, "seed": 0},
        "points": [s.to_dict() for s in summaries],
        **(extra or {}),
    }
    writer.write_summary(doc)
    writer.write_csv([csv_row(s, model, "completions") for s in summaries])
    writer.close()
    return path


def simple_run(path: Path, ttft_s: float = 0.05, seed: int = 0, labels: Sequence[str] = ("c=1", "c=4"),
               n: int = 30, **kwargs: object) -> Path:
    rng = np.random.default_rng(seed)
    points, t = {}, 0.0
    for label in labels:
        recs = synthetic_records(label, n, ttft_s, 0.005, rng, t_start=t)
        points[label] = recs
        t = recs[-1].end_s + 0.01
    return write_run(path, points, **kwargs)  # type: ignore[arg-type]
