"""A metric's distribution in bounded, mergeable form (pure): exact up to ``exact_limit`` values,
then a log-bucketed quantile sketch (the DDSketch construction) with a stated relative error.

- Exact part: while at most ``exact_limit`` values were added, every value is kept and
  :meth:`QuantileSketch.distribution` is ``stats.describe`` of them (numpy's figures exactly).
- Sketch part: a value v > 0 falls in bucket k = ceil(log_γ v), γ = (1 + α)/(1 − α); the bucket
  stands for 2γ^k/(γ + 1), which is within a relative α of every value in it (negative values are
  mirrored; |v| < ``ZERO_BELOW`` counts as 0). So the value at any rank is estimated within
  ``α·|value|``, and a percentile — interpolated between the two neighbouring ranks as numpy
  does — within ``α·max(|x_lo|, |x_hi|)`` of ``numpy.percentile`` (α = ``RELATIVE_ERROR``, 0.1%).
- count, min, max, mean and std (Chan et al.'s pairwise update) stay exact in both parts.
Memory: the counts of the buckets between the smallest and largest value seen, about 1,150 per
decade of range (e.g. 1 µs .. 100 s: ~9,200 counts, 74 KB), whatever the number of values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from servemark.metrics.stats import PERCENTILES, Distribution, describe

RELATIVE_ERROR = 0.001
EXACT_LIMIT = 32_768
ZERO_BELOW = 1e-12
_FOLD = 4096  # values buffered in a Python list before one vectorized update


class _Store:
    """Counts of consecutive bucket keys, as one dense array that grows to the keys seen."""

    __slots__ = ("counts", "offset")

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)
        self.offset = 0

    def add(self, keys: np.ndarray) -> None:
        if keys.size == 0:
            return
        lo, hi = int(keys.min()), int(keys.max())
        self._cover(lo, hi)
        binned = np.bincount(keys - lo)
        start = lo - self.offset
        self.counts[start:start + binned.size] += binned

    def merge(self, other: _Store) -> None:
        if other.counts.size == 0:
            return
        self._cover(other.offset, other.offset + other.counts.size - 1)
        start = other.offset - self.offset
        self.counts[start:start + other.counts.size] += other.counts

    def _cover(self, lo: int, hi: int) -> None:
        if self.counts.size == 0:
            self.counts = np.zeros(hi - lo + 1, dtype=np.int64)
            self.offset = lo
            return
        new_lo, new_hi = min(lo, self.offset), max(hi, self.offset + self.counts.size - 1)
        if new_lo == self.offset and new_hi == self.offset + self.counts.size - 1:
            return
        grown = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
        grown[self.offset - new_lo:self.offset - new_lo + self.counts.size] = self.counts
        self.counts, self.offset = grown, new_lo


class QuantileSketch:
    """Add values one at a time (:meth:`add`) or as arrays (:meth:`extend`); merge sketches of
    the same metric from other workers (:meth:`merge`); read a :class:`Distribution`."""

    def __init__(self, exact_limit: int = EXACT_LIMIT, relative_error: float = RELATIVE_ERROR) -> None:
        self.exact_limit = exact_limit
        self.relative_error = relative_error
        self._gamma = (1 + relative_error) / (1 - relative_error)
        self._log_gamma = math.log(self._gamma)
        self._pending: list[float] = []
        self._exact: list[np.ndarray] | None = []  # None once the sketch part took over
        self._pos = _Store()
        self._neg = _Store()
        self._zeros = 0
        self.count = 0
        self._mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def exact(self) -> bool:
        return self._exact is not None

    def add(self, value: float) -> None:
        self._pending.append(value)
        if len(self._pending) >= _FOLD:
            self._fold()

    def extend(self, values: Sequence[float] | np.ndarray) -> None:
        self._fold()  # keep the order of addition (the exact part's mean is numpy's)
        self._take(np.asarray(values, dtype=float))

    def _fold(self) -> None:
        if self._pending:
            arr = np.asarray(self._pending, dtype=float)
            self._pending = []
            self._take(arr)

    def _take(self, arr: np.ndarray) -> None:
        arr = arr.ravel()
        if arr.size == 0:
            return
        self._moments(arr.size, float(arr.mean()), float(((arr - arr.mean()) ** 2).sum()))
        self.min = min(self.min, float(arr.min()))
        self.max = max(self.max, float(arr.max()))
        if self._exact is not None:
            self._exact.append(arr)
            if self.count > self.exact_limit:
                self._to_buckets()
        else:
            self._bucket(arr)

    def _moments(self, n: int, mean: float, m2: float) -> None:
        """Chan, Golub & LeVeque's pairwise update of count, mean and sum of squared deviations."""
        total = self.count + n
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def _to_buckets(self) -> None:
        assert self._exact is not None
        chunks, self._exact = self._exact, None
        for arr in chunks:
            self._bucket(arr)

    def _bucket(self, arr: np.ndarray) -> None:
        mags = np.abs(arr)
        zero = mags < ZERO_BELOW
        self._zeros += int(zero.sum())
        keys = np.ceil(np.log(np.where(zero, 1.0, mags)) / self._log_gamma).astype(np.int64)
        self._pos.add(keys[(arr > 0) & ~zero])
        self._neg.add(keys[(arr < 0) & ~zero])

    def merge(self, other: QuantileSketch) -> None:
        """Fold ``other`` (same metric, same relative error) into this sketch."""
        if other.relative_error != self.relative_error:
            raise ValueError("cannot merge sketches with different relative errors")
        self._fold()
        other._fold()
        if other.count == 0:
            return
        if self._exact is not None and other._exact is not None \
                and self.count + other.count <= self.exact_limit:
            self._exact.extend(other._exact)
        else:
            if self._exact is not None:
                self._to_buckets()
            if other._exact is not None:
                for arr in other._exact:
                    self._bucket(arr)
            else:
                self._pos.merge(other._pos)
                self._neg.merge(other._neg)
                self._zeros += other._zeros
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self._moments(other.count, other._mean, other._m2)

    def _value_at(self, ranks: np.ndarray) -> np.ndarray:
        """The estimated values at 0-based ranks (sketch part): negatives, zeros, positives."""
        neg = self._neg.counts[::-1]
        cum = np.cumsum(np.concatenate([neg, [self._zeros], self._pos.counts]))
        idx = np.searchsorted(cum, ranks, side="right")
        out = np.empty(ranks.size)
        for i, j in enumerate(idx):
            if j < neg.size:
                key = self._neg.offset + neg.size - 1 - j
                out[i] = -2 * self._gamma ** key / (self._gamma + 1)
            elif j == neg.size:
                out[i] = 0.0
            else:
                key = self._pos.offset + (j - neg.size - 1)
                out[i] = 2 * self._gamma ** key / (self._gamma + 1)
        # the true values lie in [min, max]: clamping only moves an estimate closer to them
        return np.clip(out, self.min, self.max)

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """Percentiles (0–100) by linear interpolation between ranks, as numpy's default."""
        self._fold()
        if self.count == 0:
            raise ValueError("no values")
        if self._exact is not None:
            return [float(x) for x in np.percentile(np.concatenate(self._exact), list(qs))]
        h = np.asarray(qs, dtype=float) / 100.0 * (self.count - 1)
        lo, hi = np.floor(h), np.ceil(h)
        v_lo, v_hi = self._value_at(lo), self._value_at(hi)
        return [float(x) for x in v_lo + (h - lo) * (v_hi - v_lo)]

    def distribution(self) -> Distribution:
        self._fold()
        if self._exact is not None:
            return describe(np.concatenate(self._exact) if self._exact else np.empty(0))
        p50, p90, p95, p99 = self.percentiles(PERCENTILES)
        return Distribution(count=self.count, mean=self._mean,
                            std=math.sqrt(max(self._m2, 0.0) / self.count),
                            min=self.min, max=self.max, p50=p50, p90=p90, p95=p95, p99=p99)

    @property
    def mean(self) -> float | None:
        self._fold()
        if self.count == 0:
            return None
        if self._exact is not None:
            return float(np.mean(np.concatenate(self._exact)))
        return self._mean

    def nbytes(self) -> int:
        """Memory held by the values or bucket counts (for tests and benchmarks)."""
        held = sum(a.nbytes for a in self._exact) if self._exact is not None else 0
        return held + self._pos.counts.nbytes + self._neg.counts.nbytes + 8 * len(self._pending)
