"""Run a list of points, appending each result as soon as it is measured; resume on re-run.

Results go to a CSV in the chosen format and, beside it, a journal (``<csv>.points.jsonl``):
one JSON line per finished point — measured or failed, with its reason — keyed by the point's
identity. A re-run skips every key in the journal (failed ones too, unless ``retry_failed``),
so a sweep cut by a crash or a job's time limit continues where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from servemark.errors import ConfigError, ResultsError
from servemark.specfile import KeyLines, read_yaml
from servemark.suites.csvformat import CsvFormat, render_rows
from servemark.suites.measure import (
    Measurer,
    annotate,
    detect_hardware,
    make_measurer,
    model_shape,
    now_utc,
)
from servemark.suites.measurement import Measurement
from servemark.suites.point import Point, RunSettings

JOURNAL_SUFFIX = ".points.jsonl"


class SweepProgress(Protocol):
    def point_started(self, index: int, total: int, point: Point) -> None: ...

    def point_skipped(self, index: int, total: int, previous: Measurement) -> None: ...

    def point_finished(self, index: int, total: int, m: Measurement) -> None: ...


class NullSweepProgress:
    def point_started(self, index: int, total: int, point: Point) -> None:
        pass

    def point_skipped(self, index: int, total: int, previous: Measurement) -> None:
        pass

    def point_finished(self, index: int, total: int, m: Measurement) -> None:
        pass


def _append(path: Path, data: bytes) -> None:
    """One write, flushed to disk: a crash right after loses nothing."""
    with open(path, "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class ResultsFile:
    """A CSV in one format plus its journal; owns appending and reading back what is done."""

    def __init__(self, csv_path: Path, fmt: CsvFormat) -> None:
        self.csv_path = csv_path
        self.fmt = fmt
        self.journal_path = csv_path.with_name(csv_path.name + JOURNAL_SUFFIX)
        self._check_header()

    def _check_header(self) -> None:
        if not self.csv_path.exists() or self.csv_path.stat().st_size == 0:
            return
        with open(self.csv_path, encoding="utf-8") as fh:
            first = fh.readline()
        expected = render_rows(self.fmt, [], header=True)
        if first.strip() != expected.strip():
            raise ResultsError(
                f"{self.csv_path} already holds a CSV with other columns than the "
                f"{self.fmt.name!r} format",
                "use the --csv-format it was written with, or another --csv file")

    def done(self) -> dict[str, Measurement]:
        """Key → last recorded measurement; torn or foreign lines are ignored."""
        out: dict[str, Measurement] = {}
        if not self.journal_path.exists():
            return out
        with open(self.journal_path, "rb") as fh:
            for line in fh:
                try:
                    doc = orjson.loads(line)
                    out[str(doc["key"])] = Measurement.from_dict(doc["measurement"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
        return out

    def append(self, key: str, m: Measurement) -> None:
        try:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            row = self.fmt.row(m)
            if row is not None:
                new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
                _append(self.csv_path, render_rows(self.fmt, [row], header=new).encode())
            doc = {"key": key, "measurement": m.to_dict()}
            _append(self.journal_path, orjson.dumps(doc) + b"\n")
        except OSError as exc:
            raise ResultsError(f"cannot write {self.csv_path}: {exc.strerror}",
                               "check the path and free disk space") from exc


@dataclass
class SweepOutcome:
    """Every point of the run in order: measured now or found in the journal."""

    results: list[Measurement] = field(default_factory=list)
    measured: int = 0
    skipped: int = 0

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.results if not m.ok]


def run_points(
    points: list[Point],
    settings: RunSettings,
    results: ResultsFile,
    progress: SweepProgress | None = None,
    retry_failed: bool = False,
    resume: bool = True,
    measurer_factory: Callable[[RunSettings, Path | None], Measurer] = make_measurer,
) -> SweepOutcome:
    """Measure the points not yet in the journal, one at a time, appending each at once.

    ``resume=False`` measures every point again (a single throughput run appends a new row).
    """
    progress = progress or NullSweepProgress()
    log_dir = results.csv_path.with_name(results.csv_path.name + ".logs")
    outcome = SweepOutcome()
    with measurer_factory(settings, log_dir) as measurer:
        hardware, shape = None, None  # looked up once, only if something is measured
        done = results.done() if resume else {}
        total = len(points)
        for index, point in enumerate(points, 1):
            key = point.key(settings.mode, measurer.model)
            previous = done.get(key)
            if previous is not None and (previous.ok or not retry_failed):
                outcome.results.append(previous)
                outcome.skipped += 1
                progress.point_skipped(index, total, previous)
                continue
            if hardware is None:
                hardware = detect_hardware(settings)
                shape = model_shape(settings, measurer.model)
            progress.point_started(index, total, point)
            started = now_utc()
            m = annotate(measurer.measure(point), settings, hardware, shape, started)
            results.append(key, m)
            outcome.results.append(m)
            outcome.measured += 1
            progress.point_finished(index, total, m)
    return outcome


def load_yaml_spec(path: Path) -> tuple[dict[str, Any], KeyLines]:
    """A sweep spec file: a YAML mapping with SweepSpec's keys (hyphens allowed), and where
    each key is (for errors naming the line)."""
    data, lines = read_yaml(path, "check the --spec path")
    if data is None:
        return {}, lines
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sweep settings",
                          "e.g. `input_lens: [128, 256]`")
    return {str(k).replace("-", "_"): v for k, v in data.items()}, lines
