"""The running, mergeable state of one load point (pure): what its summary, per-endpoint
summaries, fidelity figures and other tools' metric profiles need, in bounded memory.

Records are folded in one at a time as they complete and then dropped, so a run of a million
requests keeps counts, sums, min/max and one :class:`~servemark.metrics.sketch.QuantileSketch`
per metric — never the records or their per-chunk timestamps. Accumulators of the same point
built in several worker processes merge into the one the parent summarizes. Every formula is
the one of :mod:`servemark.metrics.derive` (kept inline here because this runs per record).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from servemark.metrics.record import RequestRecord
from servemark.metrics.sketch import EXACT_LIMIT, QuantileSketch

_ITL_FOLD = 16_384  # chunk timestamps held back before one vectorized gap computation
_ROWS_FOLD = 2048  # records' raw values held back before one vectorized derivation

SKETCHES = (
    "ttft", "tpot", "itl", "e2e", "speed",  # the summary
    "lag", "ttft_intended", "e2e_intended", "tpot_e2e_over_n", "itl_request_mean",  # fidelity
    "guidellm_itl", "guidellm_tpot", "per_user_tps",  # other tools' definitions
)


class PointAccumulator:
    """Fold records in with :meth:`add`, combine workers' accumulators with :meth:`merge`."""

    def __init__(self, threshold_tps: float | None = None, *, by_endpoint: bool = False,
                 exact_limit: int = EXACT_LIMIT) -> None:
        self.threshold_tps = threshold_tps
        self.exact_limit = exact_limit
        self.records = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.start_min = math.inf  # window over the records that were not cancelled
        self.end_max = -math.inf
        self.input_tokens = 0
        self.output_tokens = 0
        self.input_len_mismatches = 0
        self.slow = 0
        self.chunks = 0  # content chunks of streamed successes
        self.chunk_tokens = 0  # output tokens of streamed successes that had chunks
        self.errors: Counter[str] = Counter()
        self.token_sources: Counter[str] = Counter()
        self.sketches = {name: QuantileSketch(exact_limit) for name in SKETCHES}
        self.endpoints: dict[str, PointAccumulator] | None = {} if by_endpoint else None
        self._rows: list[tuple[float | int | bool | None, ...]] = []
        self._itl_pending: list[Sequence[float]] = []
        self._itl_held = 0

    @classmethod
    def of(cls, records: Iterable[RequestRecord], threshold_tps: float | None = None,
           *, by_endpoint: bool = False) -> PointAccumulator:
        acc = cls(threshold_tps, by_endpoint=by_endpoint)
        for rec in records:
            acc.add(rec)
        return acc

    def add(self, rec: RequestRecord) -> None:
        """Fold one record in. Per record only counters and one tuple of raw values; the
        per-metric values are derived from those tuples in vectorized batches."""
        self.records += 1
        if self.endpoints is not None:
            sub = self.endpoints.get(rec.endpoint)
            if sub is None:
                sub = self.endpoints[rec.endpoint] = PointAccumulator(exact_limit=self.exact_limit)
            sub.add(rec)
        if rec.error_kind == "cancelled":
            self.cancelled += 1
            return
        if rec.start_s < self.start_min:
            self.start_min = rec.start_s
        if rec.end_s > self.end_max:
            self.end_max = rec.end_s
        if not rec.ok:
            self.failed += 1
            self.errors[rec.error_kind or "unknown"] += 1
            return
        self.completed += 1
        n = rec.output_tokens
        self.input_tokens += rec.input_tokens or 0
        self.output_tokens += n or 0
        self.token_sources[rec.token_source or "none"] += 1
        if (rec.token_source == "usage" and rec.requested_input_tokens is not None
                and rec.input_tokens is not None and rec.input_tokens != rec.requested_input_tokens):
            self.input_len_mismatches += 1
        times = rec.chunk_times_s
        k = len(times)
        if k:
            self._rows.append((rec.start_s, rec.end_s, rec.scheduled_s, times[0], times[-1], k, n,
                               rec.streamed))
        else:
            self._rows.append((rec.start_s, rec.end_s, rec.scheduled_s, None, None, 0, n,
                               rec.streamed))
        if rec.streamed:
            self.chunks += k
            if k:
                self.chunk_tokens += n or 0
            if k > 1:
                self._itl_pending.append(times)
                self._itl_held += k
                if self._itl_held >= _ITL_FOLD:
                    self._fold_itl()
        if len(self._rows) >= _ROWS_FOLD:
            self._fold_rows()

    def _fold_rows(self) -> None:
        """Derive every per-request metric of the held rows at once (formulas of ``derive``;
        NaN marks an undefined value and selects it out)."""
        if not self._rows:
            return
        a = np.array(self._rows, dtype=float)
        self._rows = []
        start, end, sched, first, last, k, n, streamed = a.T
        sk = self.sketches
        e2e = end - start
        sk["e2e"].extend(e2e)
        has_ttft = (streamed > 0) & (k > 0)
        ttft = first[has_ttft]
        sk["ttft"].extend(ttft)
        two = has_ttft & (n >= 2)  # NaN compares False: no token count, no TPOT
        tpot = (e2e[two] - first[two]) / (n[two] - 1)
        sk["tpot"].extend(tpot)
        sk["per_user_tps"].extend(1.0 / tpot[tpot > 0])
        gaps = (streamed > 0) & (k > 1)
        sk["itl_request_mean"].extend((last[gaps] - first[gaps]) / (k[gaps] - 1))
        timed = ~np.isnan(n) & (e2e > 0)
        speed = n[timed] / e2e[timed]
        sk["speed"].extend(speed)
        if self.threshold_tps is not None:
            self.slow += int((speed < self.threshold_tps).sum())
        some = ~np.isnan(n) & (n != 0)
        sk["tpot_e2e_over_n"].extend(e2e[some] / n[some])
        g = (k > 0) & (n >= 2)
        span = last[g] - first[g]
        sk["guidellm_itl"].extend(span / (n[g] - 1))
        sk["guidellm_tpot"].extend(span / n[g])
        s = ~np.isnan(sched)
        lag = start[s] - sched[s]
        sk["lag"].extend(lag)
        st = s & has_ttft
        sk["ttft_intended"].extend(start[st] - sched[st] + first[st])
        sk["e2e_intended"].extend(end[s] - sched[s])

    def _fold(self) -> None:
        self._fold_rows()
        self._fold_itl()

    def fold(self) -> None:
        """Fold everything held back (here and per endpoint) into the sketches."""
        self._fold()
        for sub in (self.endpoints or {}).values():
            sub.fold()

    def _fold_itl(self) -> None:
        """Gaps of all held requests in one pass: diff the concatenated times, drop the gaps
        that straddle two requests."""
        if not self._itl_pending:
            return
        lengths = np.fromiter((len(t) for t in self._itl_pending), dtype=np.int64,
                              count=len(self._itl_pending))
        flat = np.fromiter(itertools.chain.from_iterable(self._itl_pending), dtype=float,
                           count=self._itl_held)
        gaps = np.diff(flat)
        keep = np.ones(gaps.size, dtype=bool)
        keep[np.cumsum(lengths)[:-1] - 1] = False
        self.sketches["itl"].extend(gaps[keep])
        self._itl_pending = []
        self._itl_held = 0

    def sketch(self, name: str) -> QuantileSketch:
        """A metric's sketch, with everything added so far folded in."""
        self._fold()
        return self.sketches[name]

    @property
    def duration_s(self) -> float | None:
        return None if self.start_min == math.inf else self.end_max - self.start_min

    def merge(self, other: PointAccumulator) -> None:
        """Add ``other`` (the same load point measured elsewhere) into this accumulator."""
        self._fold()
        other._fold()
        for name in ("records", "completed", "failed", "cancelled", "input_tokens",
                     "output_tokens", "input_len_mismatches", "slow", "chunks", "chunk_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.start_min = min(self.start_min, other.start_min)
        self.end_max = max(self.end_max, other.end_max)
        self.errors.update(other.errors)
        self.token_sources.update(other.token_sources)
        for name, sketch in self.sketches.items():
            sketch.merge(other.sketches[name])
        if self.endpoints is not None and other.endpoints is not None:
            for url, sub in other.endpoints.items():
                mine = self.endpoints.get(url)
                if mine is None:
                    self.endpoints[url] = sub
                else:
                    mine.merge(sub)

    def nbytes(self) -> int:
        """Memory held by the sketches (bounded; for tests and benchmarks)."""
        own = sum(s.nbytes() for s in self.sketches.values()) + 8 * (self._itl_held + 8 * len(self._rows))
        return own + sum(e.nbytes() for e in (self.endpoints or {}).values())
