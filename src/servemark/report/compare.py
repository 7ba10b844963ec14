"""Compare runs against a baseline: absolute and relative deltas per metric and load point, a
seeded bootstrap confidence interval of the difference of medians (per-request values), and of
mean throughput across repeated runs; ``--fail-if`` thresholds for CI gates.

A run argument may be a group of repeated runs (``a1,a2,a3``): their records are pooled for the
latency metrics and their per-run throughputs form the sample for the throughput interval.

Runs are read in one streaming pass (``report.scan``): the latency figures come from the
points' accumulators, throughputs from each run's summary.json. The bootstrap resamples
requests; a load point with more records than the scan's sample size is bootstrapped on its
seeded sample of K of N requests, each side's resampled medians spread around its full-data
median scaled by √(K/N) (a median's spread shrinks as 1/√n), so the interval is that of N
requests, not of the K sampled.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from servemark.errors import ConfigError
from servemark.metrics import derive
from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import PointSummary, summary_of
from servemark.report.run import RunData
from servemark.report.tables import Table

LATENCY = ("ttft", "tpot", "itl", "e2e")
STATS = ("p50", "p90", "p99", "mean")
THROUGHPUT = ("total_tokens_per_s", "output_tokens_per_s", "requests_per_s")
ALIASES = {"throughput": "total_tokens_per_s", "output_throughput": "output_tokens_per_s"}
DEFAULT_METRICS = ("ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "itl_p50", "e2e_p50", "e2e_p99",
                   "total_tokens_per_s", "output_tokens_per_s", "requests_per_s", "error_rate")
BATCH = 256  # bootstrap resamples drawn at once...
MAX_CELLS = 4_000_000  # ...but never more than this many values at once (memory of large runs)


def _itl_mean(rec: RequestRecord) -> float | None:
    gaps = derive.itl_s(rec)
    return sum(gaps) / len(gaps) if gaps else None


# The per-request value whose median is compared (ITL: each request's mean gap, so requests, not
# gaps, are the resampled unit — gaps within a request are not independent).
PER_REQUEST: dict[str, Callable[[RequestRecord], float | None]] = {
    "ttft": derive.ttft_s, "tpot": derive.tpot_s, "itl": _itl_mean, "e2e": derive.e2e_s,
}
# ...and the accumulator's metric holding the same per-request values
PER_REQUEST_SKETCH = {"ttft": "ttft", "tpot": "tpot", "itl": "itl_request_mean", "e2e": "e2e"}


def metric_names() -> list[str]:
    return [f"{m}_{s}" for m in LATENCY for s in STATS] + [*THROUGHPUT, "error_rate", *ALIASES]


@dataclass
class RunGroup:
    """One side of a comparison: a run, or repeated runs of one configuration."""

    label: str
    runs: list[RunData]

    def point_labels(self) -> list[str]:
        return self.runs[0].point_labels()

    def records(self, point: str) -> list[RequestRecord]:
        """The point's records of every run (each run's sample where it had more than that)."""
        return [r for run in self.runs for r in run.point_records(point)]

    def sampled(self, point: str) -> bool:
        return any(run.point_scan(point).sampled for run in self.runs)

    def sample_note(self, point: str) -> str | None:
        """``sample of K of N requests`` when the point was sampled in any run, else None."""
        if not self.sampled(point):
            return None
        scans = [run.point_scan(point) for run in self.runs]
        return (f"sample of {sum(len(p.sample) for p in scans):,} of "
                f"{sum(p.seen for p in scans):,} requests")

    def accumulator(self, point: str) -> PointAccumulator:
        """The point's accumulator, pooled over the group's runs (in run order)."""
        accs = [run.point_scan(point).acc for run in self.runs]
        if len(accs) == 1:
            return accs[0]
        pooled = PointAccumulator()
        for acc in accs:
            pooled.merge(acc)
        return pooled

    def throughputs(self, point: str, key: str) -> list[float]:
        values = []
        for run in self.runs:
            for p in run.points:
                if p.label == point and getattr(p, key) is not None:
                    values.append(float(getattr(p, key)))
        return values


@dataclass
class Delta:
    metric: str
    unit: str
    baseline: float | None
    value: float | None
    abs_delta: float | None
    rel_delta: float | None  # fraction: 0.1 = +10 %
    ci_low: float | None = None  # interval of (value − baseline), same unit
    ci_high: float | None = None
    significant: bool | None = None  # None: no interval for this metric


@dataclass
class PointComparison:
    candidate: str
    baseline_point: str
    point: str
    deltas: list[Delta]

    def delta(self, metric: str) -> Delta:
        metric = ALIASES.get(metric, metric)
        return next(d for d in self.deltas if d.metric == metric)


@dataclass
class Comparison:
    baseline: str
    candidates: list[str]
    confidence: float
    n_boot: int
    seed: int
    points: list[PointComparison]
    unmatched: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # "side · point: sample of K of N requests"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.samples:  # unsampled comparisons read as they always did
            del data["samples"]
        return data


def bootstrap_diff(a: np.ndarray, b: np.ndarray, stat: Callable[..., np.ndarray],
                   rng: np.random.Generator, n_boot: int, confidence: float) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``stat(b) − stat(a)``, resampling each side with
    replacement. None when either side has fewer than two values."""
    if a.size < 2 or b.size < 2:
        return None
    diffs = np.empty(n_boot)
    batch = max(1, min(BATCH, MAX_CELLS // max(a.size, b.size)))
    for start in range(0, n_boot, batch):
        n = min(batch, n_boot - start)
        ra = a[rng.integers(0, a.size, (n, a.size))]
        rb = b[rng.integers(0, b.size, (n, b.size))]
        diffs[start:start + n] = stat(rb, axis=1) - stat(ra, axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    return float(low), float(high)


def sampled_bootstrap_diff(a: np.ndarray, b: np.ndarray, n_a: int, n_b: int,
                           center_a: float, center_b: float, rng: np.random.Generator,
                           n_boot: int, confidence: float) -> tuple[float, float] | None:
    """Interval of median(B) − median(A) when ``a``/``b`` are samples of ``n_a``/``n_b`` values
    whose medians are ``center_a``/``center_b``: each side's bootstrap medians (resamples of its
    sample) minus the sample's median, scaled by √(len/n), around its full median."""
    if a.size < 2 or b.size < 2:
        return None
    sides = []
    for x, n, center in ((a, n_a, center_a), (b, n_b, center_b)):
        meds = np.empty(n_boot)
        batch = max(1, min(BATCH, MAX_CELLS // x.size))
        for start in range(0, n_boot, batch):
            k = min(batch, n_boot - start)
            meds[start:start + k] = np.median(x[rng.integers(0, x.size, (k, x.size))], axis=1)
        sides.append(center + (meds - np.median(x)) * np.sqrt(x.size / max(n, x.size)))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(sides[1] - sides[0], [alpha, 1.0 - alpha])
    return float(low), float(high)


def _values(recs: list[RequestRecord], fn: Callable[[RequestRecord], float | None]) -> np.ndarray:
    return np.asarray([v for r in recs if r.ok and (v := fn(r)) is not None], dtype=float)


def _delta(metric: str, unit: str, base: float | None, value: float | None,
           ci: tuple[float, float] | None = None) -> Delta:
    abs_d = None if base is None or value is None else value - base
    rel = None if abs_d is None or not base else abs_d / abs(base)
    d = Delta(metric, unit, base, value, abs_d, rel)
    if ci is not None:
        d.ci_low, d.ci_high = ci
        d.significant = not (ci[0] <= 0.0 <= ci[1])
    return d


def _scale(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def compare_point(base: RunGroup, cand: RunGroup, base_point: str, point: str,
                  rng: np.random.Generator, n_boot: int, confidence: float) -> PointComparison:
    acc_a, acc_b = base.accumulator(base_point), cand.accumulator(point)
    sa: PointSummary = summary_of(acc_a, base_point)
    sb: PointSummary = summary_of(acc_b, point)
    recs_a, recs_b = base.records(base_point), cand.records(point)
    sampled = base.sampled(base_point) or cand.sampled(point)
    deltas = []
    for m in LATENCY:
        fn = PER_REQUEST[m]
        va, vb = _values(recs_a, fn), _values(recs_b, fn)
        if sampled:
            ska, skb = acc_a.sketch(PER_REQUEST_SKETCH[m]), acc_b.sketch(PER_REQUEST_SKETCH[m])
            ci = None
            if ska.count and skb.count:
                ci = sampled_bootstrap_diff(va, vb, ska.count, skb.count, ska.percentiles([50])[0],
                                            skb.percentiles([50])[0], rng, n_boot, confidence)
        else:
            ci = bootstrap_diff(va, vb, np.median, rng, n_boot, confidence)
        for s in STATS:
            da, db = getattr(getattr(sa, f"{m}_s"), s), getattr(getattr(sb, f"{m}_s"), s)
            deltas.append(_delta(f"{m}_{s}", "ms", _scale(da, 1e3), _scale(db, 1e3),
                                 (ci[0] * 1e3, ci[1] * 1e3) if ci and s == "p50" else None))
    for key in THROUGHPUT:
        ta, tb = base.throughputs(base_point, key), cand.throughputs(point, key)
        ci = None
        if len(ta) >= 2 and len(tb) >= 2:  # repeated runs: is the throughput change real?
            ci = bootstrap_diff(np.asarray(ta), np.asarray(tb), np.mean, rng, n_boot, confidence)
        unit = key.removesuffix("_per_s").replace("total_", "").replace("_", " ") + "/s"
        deltas.append(_delta(key, unit, float(np.mean(ta)) if ta else None,
                             float(np.mean(tb)) if tb else None, ci))
    rate = [s.failed / (s.completed + s.failed) if s.completed + s.failed else None for s in (sa, sb)]
    deltas.append(_delta("error_rate", "fraction", rate[0], rate[1]))
    return PointComparison(cand.label, base_point, point, deltas)


def compare(groups: Sequence[RunGroup], n_boot: int = 2000, confidence: float = 0.95,
            seed: int = 0) -> Comparison:
    """Compare every group after the first against the first, load point by load point."""
    if len(groups) < 2:
        raise ConfigError("compare needs at least two runs", "servemark compare RUN_A RUN_B")
    if not 0 < confidence < 1 or n_boot < 100:
        raise ConfigError("invalid bootstrap settings", "use 0 < --confidence < 1 and --n-boot ≥ 100")
    rng = np.random.default_rng(seed)
    base, out, unmatched = groups[0], [], []
    samples: list[str] = []
    for cand in groups[1:]:
        pairs = [(p, p) for p in base.point_labels() if p in cand.point_labels()]
        if not pairs and len(base.point_labels()) == 1 and len(cand.point_labels()) == 1:
            pairs = [(base.point_labels()[0], cand.point_labels()[0])]
        matched = {p for p, _ in pairs}
        unmatched += [f"{cand.label}: {p}" for p in cand.point_labels() if p not in matched]
        unmatched += [f"{base.label}: {p} (no match in {cand.label})"
                      for p in base.point_labels() if p not in matched]
        out += [compare_point(base, cand, a, b, rng, n_boot, confidence) for a, b in pairs]
        for g, labels in ((base, [a for a, _ in pairs]), (cand, [b for _, b in pairs])):
            for p in labels:
                note = g.sample_note(p)
                if note is not None and f"{g.label} · {p}: {note}" not in samples:
                    samples.append(f"{g.label} · {p}: {note}")
    return Comparison(base.label, [g.label for g in groups[1:]], confidence, n_boot, seed, out,
                      unmatched, samples)


# ---- thresholds -------------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_THRESHOLD = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=|>|<)\s*([+-]?\d+(?:\.\d+)?)\s*(%|ms|s)?\s*$")


@dataclass(frozen=True)
class Threshold:
    """``ttft_p99 > +10%``: fail when the change (relative with %, else absolute) crosses it."""

    text: str
    metric: str
    op: str
    value: float
    relative: bool

    def breached(self, d: Delta) -> bool | None:
        """True/False, or None when the change is undefined (a metric without values)."""
        change = (None if d.rel_delta is None else d.rel_delta * 100.0) if self.relative else d.abs_delta
        return None if change is None else _OPS[self.op](change, self.value)


def parse_threshold(text: str) -> Threshold:
    m = _THRESHOLD.match(text.lower())
    hint = ('for example --fail-if "ttft_p99 > +10%", "throughput < -5%" or "e2e_p50 > 20ms"; '
            f"metrics: {', '.join(metric_names())}")
    if not m:
        raise ConfigError(f"cannot parse threshold {text!r}", hint)
    metric, op, number, unit = m.groups()
    metric = ALIASES.get(metric, metric)
    if metric not in metric_names():
        raise ConfigError(f"unknown metric {metric!r} in threshold {text!r}", hint)
    value = float(number)
    if unit in ("ms", "s") and not metric.startswith(LATENCY):
        raise ConfigError(f"{unit} makes no sense for {metric} in {text!r}", hint)
    if unit == "s":
        value *= 1000.0  # latency deltas are in ms
    return Threshold(text, metric, op, value, unit == "%")


@dataclass
class Breach:
    threshold: str
    candidate: str
    point: str
    change: str


def check_thresholds(comp: Comparison, thresholds: Sequence[Threshold]) -> list[Breach]:
    out = []
    for t in thresholds:
        for pc in comp.points:
            d = pc.delta(t.metric)
            if t.breached(d):
                change = (f"{d.rel_delta * 100:+.1f}%" if t.relative and d.rel_delta is not None
                          else f"{d.abs_delta:+.3g} {d.unit}")
                out.append(Breach(t.text, pc.candidate, pc.point, change))
    return out


# ---- tables -----------------------------------------------------------------------------------

def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if unit == "fraction" else f"{value:.2f}"


def comparison_tables(comp: Comparison, metrics: Sequence[str] | None = None) -> list[Table]:
    """One table per compared load point: baseline, candidate, deltas, interval, verdict."""
    pct = round(comp.confidence * 100)
    tables = []
    for pc in comp.points:
        rows = []
        for d in pc.deltas:
            if metrics and d.metric not in metrics:
                continue
            rel = "–" if d.rel_delta is None else f"{d.rel_delta * 100:+.1f}%"
            ci = "–" if d.ci_low is None else f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
            verdict = {None: "", True: "significant", False: "no significant change"}[d.significant]
            name = d.metric if d.metric.endswith("_per_s") else f"{d.metric} {d.unit}"
            rows.append([name, _fmt(d.baseline, d.unit), _fmt(d.value, d.unit),
                         "–" if d.abs_delta is None else f"{d.abs_delta:+.2f}", rel, ci, verdict])
        point = pc.point if pc.point == pc.baseline_point else f"{pc.baseline_point} → {pc.point}"
        tables.append(Table(f"{pc.candidate} vs {comp.baseline} · {point}",
                            ["metric", "baseline", "candidate", "Δ", "Δ %", f"{pct}% CI of Δ", "verdict"],
                            rows))
    return tables
