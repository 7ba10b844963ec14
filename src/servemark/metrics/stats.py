"""Distribution statistics (pure): mean, std, min, max and percentiles of a sample.

Percentiles use linear interpolation between closest ranks (numpy's default method), so they
agree with ``numpy.percentile``. An empty sample gives ``None`` for every statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class Distribution:
    """Statistics of one metric; all values share the metric's unit (seconds for ``*_s``)."""

    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None

    @property
    def median(self) -> float | None:
        return self.p50

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distribution:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The q-th percentile (0–100) by linear interpolation; None for an empty sample."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return None
    return float(np.percentile(arr, q))


def describe(values: Sequence[float] | np.ndarray) -> Distribution:
    """Summarize a sample. Population standard deviation (ddof=0), as numpy computes it."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return Distribution(0, None, None, None, None, None, None, None, None)
    p50, p90, p95, p99 = (float(x) for x in np.percentile(arr, PERCENTILES))
    return Distribution(
        count=int(arr.size),
        mean=float(arr.mean()),
        std=float(arr.std()),
        min=float(arr.min()),
        max=float(arr.max()),
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
    )
