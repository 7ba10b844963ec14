"""One streaming pass over a run's records: everything reports, plots and comparisons need, in
memory bounded by the number of load points, not the number of requests.

Per load point: a :class:`~servemark.metrics.accumulate.PointAccumulator` (with per-endpoint
ones) for every table figure and percentile curve — exact while a metric has at most
``EXACT_LIMIT`` values, the sketch's stated error beyond — and a seeded reservoir sample of at
most ``sample_size`` records (``SERVEMARK_REPORT_SAMPLE``, default 10,000) for what needs
individual requests (the comparison's bootstrap). Per run: failed requests grouped with a few
example messages, and fine-grained histograms of output tokens, sends and ends over time for the
timeline. A point with no more records than the sample size keeps all of them in file order, so
small runs are reported from their records exactly as before.
"""

from __future__ import annotations

import math
import os
import random
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.record import RequestRecord

SAMPLE_ENV = "SERVEMARK_REPORT_SAMPLE"
DEFAULT_SAMPLE = 10_000
MAX_ERROR_EXAMPLES = 5
MAX_ERROR_CHARS = 300
FINE_S = 0.01  # timeline histograms: 10 ms bins, doubled when a run is too long for MAX_FINE
MAX_FINE = 1 << 20
_FOLD = 65_536  # values held before one vectorized histogram update


def sample_size() -> int:
    """Records kept per load point (``SERVEMARK_REPORT_SAMPLE``; at least 1)."""
    raw = os.environ.get(SAMPLE_ENV, "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_SAMPLE
    except ValueError:
        return DEFAULT_SAMPLE


class TimeHistogram:
    """Weights of times in bins of a fixed width that doubles (merging neighbours) whenever the
    range seen would need more than ``MAX_FINE`` bins: bounded memory whatever the run's length."""

    def __init__(self, width: float = FINE_S) -> None:
        self.width = width
        self.counts: np.ndarray = np.zeros(0)
        self.offset = 0
        self._times: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self._held = 0
        self._ones: list[float] = []
        self._chunks: list[float] = []  # chunk times since their request's start...
        self._runs: list[tuple[float, int, float]] = []  # ...and (start, chunks, weight each)

    def add_one(self, t: float) -> None:
        """One time of weight 1."""
        self._ones.append(t)
        if len(self._ones) >= _FOLD:
            self._times.append(np.asarray(self._ones))
            self._weights.append(np.ones(len(self._ones)))
            self._ones = []
            self.fold()

    def add_chunks(self, times: list[float], start: float, weight: float) -> None:
        """A request's chunk times (since ``start``), each of weight ``weight``."""
        self._chunks.extend(times)
        self._runs.append((start, len(times), weight))
        if len(self._chunks) >= _FOLD:
            self._take_chunks()
            self.fold()

    def _take_chunks(self) -> None:
        if self._runs:
            starts, counts, weights = (np.asarray(c) for c in zip(*self._runs, strict=True))
            self._times.append(np.asarray(self._chunks) + np.repeat(starts, counts))
            self._weights.append(np.repeat(weights, counts))
            self._chunks, self._runs = [], []

    def add(self, times: np.ndarray, weights: np.ndarray) -> None:
        self._times.append(times)
        self._weights.append(weights)
        self._held += times.size
        if self._held >= _FOLD:
            self.fold()

    def fold(self) -> None:
        self._take_chunks()
        if self._ones:
            self._times.append(np.asarray(self._ones))
            self._weights.append(np.ones(len(self._ones)))
            self._ones = []
        if not self._times:
            return
        t, w = np.concatenate(self._times), np.concatenate(self._weights)
        self._times, self._weights, self._held = [], [], 0
        keys = np.floor(t / self.width).astype(np.int64)
        lo = min(int(keys.min()), self.offset if self.counts.size else int(keys.min()))
        hi = max(int(keys.max()), self.offset + self.counts.size - 1)
        while hi - lo + 1 > MAX_FINE:
            self._coarsen()
            keys, lo, hi = keys // 2, lo // 2, hi // 2
        grown = np.zeros(hi - lo + 1)
        grown[self.offset - lo:self.offset - lo + self.counts.size] = self.counts
        grown += np.bincount(keys - lo, weights=w, minlength=grown.size)
        self.counts, self.offset = grown, lo

    def _coarsen(self) -> None:
        self.width *= 2
        if self.counts.size:
            new = self.offset // 2
            keys = (np.arange(self.counts.size) + self.offset) // 2 - new
            self.counts, self.offset = np.bincount(keys, weights=self.counts), new

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin centres, weights) of the non-empty bins."""
        self.fold()
        keep = np.nonzero(self.counts)[0]
        return (keep + self.offset + 0.5) * self.width, self.counts[keep]


@dataclass
class PointScan:
    """One load point as read from the records."""

    label: str
    acc: PointAccumulator = field(default_factory=PointAccumulator)
    endpoints: set[str] = field(default_factory=set)  # seen in this point's records
    sample: list[RequestRecord] = field(default_factory=list)
    seen: int = 0  # records of this point (the sample's population)
    first_start: float = math.inf  # of any record, cancelled ones included (timeline marks)
    rng: random.Random | None = field(default=None, repr=False)  # seeded from the label

    @property
    def sampled(self) -> bool:
        """True when the sample holds fewer records than the point has."""
        return self.seen > len(self.sample)

    def by_endpoint(self) -> dict[str, PointAccumulator]:
        """Per-endpoint accumulators; with one endpoint that is the point's own."""
        if self.acc.endpoints is not None:
            return self.acc.endpoints
        assert len(self.endpoints) <= 1, "scanned without per-endpoint accumulators"
        return {e: self.acc for e in self.endpoints}


@dataclass
class RunScan:
    """What one pass over a run's records leaves (see the module docstring)."""

    sample_size: int
    by_endpoint: bool = True  # False: one accumulator per point until a second endpoint shows
    points: dict[str, PointScan] = field(default_factory=dict)  # in order of first record
    errors: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    error_examples: dict[tuple[str, str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    tokens: TimeHistogram = field(default_factory=TimeHistogram)
    starts: TimeHistogram = field(default_factory=TimeHistogram)
    ends: TimeHistogram = field(default_factory=TimeHistogram)
    t0: float = math.inf
    t_end: float = -math.inf
    records: int = 0

    @property
    def sampled(self) -> bool:
        return any(p.sampled for p in self.points.values())

    @property
    def needs_endpoints(self) -> bool:
        """Scanned without per-endpoint accumulators, yet a point had several endpoints."""
        return not self.by_endpoint and any(len(p.endpoints) > 1 for p in self.points.values())

    def all_records(self) -> list[RequestRecord]:
        """Every record, point by point (file order within each) — only when nothing was
        sampled (small runs)."""
        assert not self.sampled
        return [r for p in self.points.values() for r in p.sample]

    def point(self, label: str) -> PointScan:
        return self.points.get(label) or PointScan(label)

    def add(self, rec: RequestRecord) -> None:
        self.records += 1
        p = self.points.get(rec.load_point)
        if p is None:
            p = self.points[rec.load_point] = PointScan(
                rec.load_point, PointAccumulator(by_endpoint=self.by_endpoint))
        p.acc.add(rec)
        if rec.endpoint not in p.endpoints:
            p.endpoints.add(rec.endpoint)
        if p.seen < self.sample_size:  # reservoir sampling (Algorithm R), seeded per point
            p.sample.append(rec)
        else:
            if p.rng is None:
                p.rng = random.Random(zlib.crc32(p.label.encode()))
            j = p.rng.randrange(p.seen + 1)
            if j < self.sample_size:
                p.sample[j] = rec
        p.seen += 1
        p.first_start = min(p.first_start, rec.start_s)
        self.t0 = min(self.t0, rec.start_s)
        self.t_end = max(self.t_end, rec.end_s)
        self.starts.add_one(rec.start_s)
        self.ends.add_one(rec.end_s)
        if rec.ok and rec.chunk_times_s and rec.output_tokens:
            self.tokens.add_chunks(rec.chunk_times_s, rec.start_s,
                                   rec.output_tokens / len(rec.chunk_times_s))
        if not rec.ok:
            key = (rec.load_point, rec.error_kind or "unknown", "–" if rec.status is None else str(rec.status))
            self.errors[key] += 1
            text = (rec.error or "").strip()[:MAX_ERROR_CHARS]
            examples = self.error_examples[key]
            if text and text not in examples and len(examples) < MAX_ERROR_EXAMPLES:
                examples.append(text)


def scan_records(records: Iterable[RequestRecord | None], size: int | None = None,
                 by_endpoint: bool = True) -> tuple[RunScan, int]:
    """Fold records (``None``: an unreadable line) into a :class:`RunScan`; returns it and the
    number of unreadable lines. ``by_endpoint=False`` saves the per-endpoint accumulators of a
    run recorded against one endpoint (check :attr:`RunScan.needs_endpoints` after)."""
    scan, torn = RunScan(sample_size() if size is None else size, by_endpoint), 0
    for rec in records:
        if rec is None:
            torn += 1
        else:
            scan.add(rec)
    return scan, torn
