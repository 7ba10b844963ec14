"""A run as reports see it: summary document, load point summaries, one streaming scan of its
records (accumulators, a bounded sample, error groups, timeline histograms: ``report.scan``), and
a label that names its configuration (model, TP/PP, replicas) in legends and tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servemark.errors import ResultsError
from servemark.metrics.record import RequestRecord
from servemark.metrics.summary import PointSummary
from servemark.report.scan import PointScan, RunScan, scan_records
from servemark.store.rundir import REQUESTS, iter_records, load_summary

# Where deployment details may be recorded (by `servemark deploy` or a spec), first match wins.
_PARALLEL_KEYS = (("TP", ("tensor_parallel_size", "tp")), ("PP", ("pipeline_parallel_size", "pp")),
                  ("replicas", ("replicas", "num_replicas")))


@dataclass
class RunData:
    """Everything a report needs from one run directory. ``records`` is for runs built in
    memory (tests); a run read from disk holds only its :attr:`scan`."""

    path: Path
    doc: dict[str, Any]
    points: list[PointSummary]
    records: list[RequestRecord] | None = None
    torn_lines: int = 0
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    _scan: RunScan | None = field(default=None, repr=False)

    @property
    def model(self) -> str:
        return str(self.doc.get("model") or "?")

    @property
    def scan(self) -> RunScan:
        """The one pass over the records (made on first use for in-memory records)."""
        if self._scan is None:
            self._scan, _ = scan_records(self.records or [])
        return self._scan

    def point_scan(self, label: str) -> PointScan:
        return self.scan.point(label)

    def point_records(self, label: str) -> list[RequestRecord]:
        """The point's records: all of them unless the point had more than the sample size,
        then its sample."""
        if self.records is not None:
            return [r for r in self.records if r.load_point == label]
        return self.scan.point(label).sample

    def point_labels(self) -> list[str]:
        """Load points in run order: those summarized, then any with records only (interrupted)."""
        labels = [p.label for p in self.points]
        for label in self.scan.points:
            if label not in labels:
                labels.append(label)
        return labels


def _deploy_value(doc: dict[str, Any], keys: Sequence[str]) -> Any:
    for section in ("deploy", "server", "config"):
        data = doc.get(section)
        if isinstance(data, dict):
            for key in keys:
                if data.get(key) not in (None, ""):
                    return data[key]
    return None


def config_label(doc: dict[str, Any]) -> str:
    """``model TP=2 PP=1 replicas=2`` — only the parts the run recorded."""
    model = str(doc.get("model") or "?")
    parts = [model.rstrip("/").rsplit("/", 1)[-1] if "/" in model and len(model) > 40 else model]
    for name, keys in _PARALLEL_KEYS:
        value = _deploy_value(doc, keys)
        if value is not None:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def load_run(path: Path) -> RunData:
    """Read a run directory: summary.json, and requests.jsonl in one streaming pass."""
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"{path} is not a directory", "pass a servemark run directory")
    doc = load_summary(path)
    if not (path / REQUESTS).exists():
        raise ResultsError(f"{path} has no {REQUESTS}", "pass a servemark run directory")
    # one accumulator per point suffices for a run against one endpoint (as recorded in
    # summary.json); should its records show several after all, read them again with them
    scan, torn = scan_records(iter_records(path / REQUESTS), by_endpoint=bool(doc.get("endpoints")))
    if scan.needs_endpoints:
        scan, torn = scan_records(iter_records(path / REQUESTS))
    points = [PointSummary.from_dict(p) for p in doc.get("points") or []]
    return RunData(path, doc, points, None, torn, config_label(doc), _scan=scan)


def load_runs(paths: Sequence[Path]) -> list[RunData]:
    """Load several runs; labels that would collide get the run directory's name appended."""
    if not paths:
        raise ResultsError("no run directories given", "pass one or more run directories")
    runs = [load_run(p) for p in paths]
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    for run in runs:
        if counts[run.label] > 1:
            run.label = f"{run.label} [{run.path.name}]"
    labels = [r.label for r in runs]
    for i, run in enumerate(runs):  # same directory names too: number them
        if labels.count(run.label) > 1:
            run.label = f"{run.label} #{i + 1}"
    return runs


def series_label(run: RunData, point: str) -> str:
    """A legend entry for one load point of one run: the configuration and the load point."""
    return f"{run.label} · {point}"
