"""Predictions against the shipped table of published measurements (pure, given the table).

Rows tagged ``calibration`` chose the default factors; rows tagged ``validation`` did not, and
their error is the honest one. Both are reported, never mixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from servemark.plan.calibrate import Comparison, Point, compare, fit, mape
from servemark.plan.catalog import catalog_model, get_gpu, measurement_data
from servemark.plan.memory import norm_dtype
from servemark.plan.predict import FIT_START, Factors, Setup

SETS = ("calibration", "validation")


def row_to_point(row: dict[str, Any]) -> Point:
    arch = catalog_model(row["model"])
    if arch is None:
        raise KeyError(f"measurement {row['id']}: model {row['model']} is not in the catalog")
    setup = Setup(arch, get_gpu(row["gpu"]), int(row.get("tp", 1)), int(row.get("pp", 1)),
                  norm_dtype(row["dtype"]), norm_dtype(row["kv_dtype"], "--kv-dtype"))
    load = int(row["concurrency"] if row["mode"] == "serving" else row["batch"])
    return Point(row["id"], setup, row["mode"], int(row["input_len"]), int(row["output_len"]), load,
                 {k: float(v) for k, v in row["measured"].items()}, bool(row.get("per_gpu", False)),
                 row["set"], row["source"])


def published_points(which: str | None = None, data: dict[str, Any] | None = None) -> list[Point]:
    """Points of the shipped table; ``which`` picks one set."""
    rows = (data or measurement_data())["rows"]
    return [row_to_point(r) for r in rows if which is None or r["set"] == which]


@dataclass
class Validation:
    factors: Factors
    rows: list[Comparison]
    sources: dict[str, str]

    def mape(self, which: str) -> dict[str, tuple[float, int]]:
        return mape(r for r in self.rows if r.set == which)


def validate(factors: Factors | None = None, data: dict[str, Any] | None = None) -> Validation:
    data = data or measurement_data()
    f = factors or Factors()
    return Validation(f, compare(published_points(None, data), f), dict(data.get("sources", {})))


def refit_defaults(points: Sequence[Point] | None = None) -> Factors:
    """Re-derive the default factors from the calibration rows only (how the defaults were made)."""
    return fit(points if points is not None else published_points("calibration"), Factors(**FIT_START),
               names=("mfu", "mbu", "comm_eff", "step_overhead_s", "allreduce_latency_s"))
