"""Measured points, predicted-vs-measured comparison, and fitting the efficiency factors (pure).

A fit minimises the mean squared log error over every measured metric of every point, one factor
at a time on a shrinking logarithmic grid (deterministic, no SciPy). Log error treats a 2x
over- and under-prediction alike, which is what a planner's user cares about.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from servemark.errors import ConfigError
from servemark.plan.predict import Factors, Prediction, Setup, serving, static_batch

# metric name -> (unit shown, scale from SI)
METRICS: dict[str, tuple[str, float]] = {
    "ttft_ms": ("ms", 1e3),
    "itl_ms": ("ms", 1e3),
    "e2e_ms": ("ms", 1e3),
    "output_tokens_per_s": ("tok/s", 1.0),
}
BOUNDS: dict[str, tuple[float, float]] = {
    "mfu": (0.02, 1.0), "mbu": (0.02, 1.0), "comm_eff": (0.05, 1.0),
    "step_overhead_s": (1e-5, 2.0), "request_overhead_s": (1e-5, 5.0),
    "allreduce_latency_s": (1e-7, 1e-3),
}


@dataclass(frozen=True)
class Point:
    """One measured workload point: the setup, the load, and what was measured (ms, tok/s)."""

    label: str
    setup: Setup
    mode: str  # "serving" | "static"
    input_len: int
    output_len: int
    load: int  # concurrency (serving) or batch (static)
    measured: dict[str, float]
    per_gpu: bool = False
    set: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def predict_point(p: Point, factors: Factors) -> dict[str, float]:
    """The prediction for a point, in the point's metrics and units."""
    if p.mode == "serving":
        pred: Prediction = serving(p.setup, factors, p.input_len, p.output_len, p.load)
    elif p.mode == "static":
        pred = static_batch(p.setup, factors, p.input_len, p.output_len, p.load)
    else:
        raise ConfigError(f"{p.label}: unknown mode {p.mode!r}", "use serving or static")
    tput = pred.output_tokens_per_s / (p.setup.gpus if p.per_gpu else 1)
    values = {"ttft_ms": pred.ttft_s * 1e3, "itl_ms": pred.tpot_s * 1e3, "e2e_ms": pred.e2e_s * 1e3,
              "output_tokens_per_s": tput}
    return {k: values[k] for k in p.measured}


@dataclass(frozen=True)
class Comparison:
    label: str
    metric: str
    measured: float
    predicted: float
    set: str = ""
    source: str = ""

    @property
    def error_pct(self) -> float:
        """Signed error of the prediction, % of the measured value."""
        return (self.predicted - self.measured) / self.measured * 100.0


def compare(points: Iterable[Point], factors: Factors) -> list[Comparison]:
    out = []
    for p in points:
        for metric, predicted in predict_point(p, factors).items():
            out.append(Comparison(p.label, metric, p.measured[metric], predicted, p.set, p.source))
    return out


def mape(rows: Iterable[Comparison]) -> dict[str, tuple[float, int]]:
    """Mean absolute percentage error per metric, with the number of rows behind it."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        acc.setdefault(r.metric, []).append(abs(r.error_pct))
    return {m: (sum(v) / len(v), len(v)) for m, v in acc.items()}


def loss(points: Sequence[Point], factors: Factors) -> float:
    errs = []
    for p in points:
        for metric, predicted in predict_point(p, factors).items():
            measured = p.measured[metric]
            if predicted > 0 and measured > 0 and math.isfinite(predicted):
                errs.append(math.log(predicted / measured) ** 2)
            else:
                errs.append(25.0)
    return sum(errs) / max(len(errs), 1)


def fit(points: Sequence[Point], start: Factors | None = None,
        names: Sequence[str] = ("mfu", "mbu", "step_overhead_s", "request_overhead_s"),
        rounds: int = 8, grid: int = 17) -> Factors:
    """Factors that minimise the log error over ``points`` (coordinate search on log grids)."""
    if not points:
        raise ConfigError("nothing to calibrate on: no measured points", "pass run directories with closed-loop points")
    for n in names:
        if n not in BOUNDS:
            raise ConfigError(f"unknown factor {n!r}", f"known: {', '.join(BOUNDS)}")
    best = start or Factors()
    best_loss = loss(points, best)
    span = {n: math.log(BOUNDS[n][1] / BOUNDS[n][0]) for n in names}
    for _ in range(rounds):
        for n in names:
            lo_b, hi_b = BOUNDS[n]
            centre = math.log(getattr(best, n))
            half = span[n] / 2
            for i in range(grid):
                v = math.exp(centre - half + 2 * half * i / (grid - 1))
                if not lo_b <= v <= hi_b:
                    continue
                cand = replace(best, **{n: v})
                cur = loss(points, cand)
                if cur < best_loss - 1e-12:
                    best, best_loss = cand, cur
            span[n] /= 3.0
    return best


def points_from_run(doc: dict[str, Any], token_means: dict[str, tuple[float, float]], setup: Setup,
                    label: str) -> list[Point]:
    """Closed-loop points of one run (summary.json as a dict). ``token_means`` maps a load point
    to its measured mean (input, output) tokens per request; the config's lengths are the
    fallback. Open-loop (request-rate) points are skipped: the predictor models closed loops."""
    cfg = doc.get("config") or {}
    out = []
    for s in doc.get("points") or []:
        conc = s.get("concurrency")
        if not conc or not s.get("completed"):
            continue
        ins, outs = token_means.get(s["label"], (cfg.get("input_len"), cfg.get("output_len")))
        # lengths may be distributions ("uniform:64:256"); without measured means, skip the point
        if not isinstance(ins, int | float) or not isinstance(outs, int | float) or not ins or not outs:
            continue
        measured: dict[str, float] = {}
        ttft = (s.get("ttft_s") or {}).get("mean")
        tpot = (s.get("tpot_s") or {}).get("mean")
        if ttft:
            measured["ttft_ms"] = ttft * 1e3
        if tpot:
            measured["itl_ms"] = tpot * 1e3
        if s.get("output_tokens_per_s"):
            measured["output_tokens_per_s"] = float(s["output_tokens_per_s"])
        if measured:
            out.append(Point(f"{label}:{s['label']}", setup, "serving", round(ins), round(outs), int(conc),
                             measured, set="run", source=label))
    return out
