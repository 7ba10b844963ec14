"""Measured points from servemark run directories (reads files; the fit itself is pure)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from servemark.errors import ConfigError, ResultsError
from servemark.plan.calibrate import Point, points_from_run
from servemark.plan.predict import Setup
from servemark.store.rundir import REQUESTS, iter_records, load_summary


def token_means(run_dir: Path) -> dict[str, tuple[float, float]]:
    """Mean input and output tokens of the successful requests of each load point."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    if not (run_dir / REQUESTS).exists():
        raise ResultsError(f"{run_dir} has no {REQUESTS}", "pass a servemark run directory")
    for rec in iter_records(run_dir / REQUESTS):  # streamed: a million-request run fits
        if rec is not None and rec.ok and rec.input_tokens and rec.output_tokens:
            acc = sums[rec.load_point]
            acc[0] += rec.input_tokens
            acc[1] += rec.output_tokens
            acc[2] += 1
    return {k: (v[0] / v[2], v[1] / v[2]) for k, v in sums.items() if v[2]}


def load_run_points(run_dirs: list[Path], setup: Setup) -> list[Point]:
    points: list[Point] = []
    for run_dir in run_dirs:
        doc = load_summary(run_dir)
        found = points_from_run(doc, token_means(run_dir), setup, run_dir.name)
        if not found:
            raise ConfigError(f"{run_dir} has no finished closed-loop (--concurrency) points",
                              "calibrate on runs made with `servemark bench --concurrency ...`")
        points.extend(found)
    return points
