"""Sweep bookkeeping with a scripted measurer: append as measured, resume, failures recorded.

The real vLLM runs of the same paths are in tests/integration/test_fom_vllm.py.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pytest

from servemark.errors import ResultsError
from servemark.suites.csvformat import get_format, parse_csv
from servemark.suites.measurement import Measurement, failed
from servemark.suites.point import Point, RunSettings
from servemark.suites.sweep import NullSweepProgress, ResultsFile, load_yaml_spec, run_points

SETTINGS = RunSettings(mode="offline", model="m", hardware="TestGPU", num_hardware=1)


class ScriptedMeasurer:
    """Measures instantly; points with input_len in ``fail`` fail; counts what it measured."""

    def __init__(self, fail: set[int], log: list[Point]) -> None:
        self.model = "m"
        self.fail = fail
        self.log = log

    def __enter__(self) -> ScriptedMeasurer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        pass

    def measure(self, point: Point) -> Measurement:
        self.log.append(point)
        if point.input_len in self.fail:
            return failed(point, "offline", "m", "CUDA out of memory")
        b = point.batch_size
        return Measurement(point=point, mode="offline", model="m", status="ok",
                           latencies_s=[0.5, 0.5], input_tokens=[b * point.input_len] * 2,
                           output_tokens=[b * point.output_len] * 2)


class StopAfter(NullSweepProgress):
    def __init__(self, n: int) -> None:
        self.n = n
        self.finished = 0

    def point_finished(self, index: int, total: int, m: Measurement) -> None:
        self.finished += 1
        if self.finished == self.n:
            raise KeyboardInterrupt


POINTS = [Point(i, i, 2) for i in (16, 32, 64, 128)]


def factory(fail: set[int], log: list[Point]):  # type: ignore[no-untyped-def]
    return lambda settings, log_dir: ScriptedMeasurer(fail, log)


def test_interrupted_sweep_resumes_without_repeating(tmp_path: Path) -> None:
    csv = tmp_path / "out.csv"
    log: list[Point] = []
    with pytest.raises(KeyboardInterrupt):
        run_points(POINTS, SETTINGS, ResultsFile(csv, get_format("servemark")), StopAfter(2),
                   measurer_factory=factory({64}, log))
    assert len(parse_csv(csv.read_text())) == 2  # appended as measured, before the interrupt
    outcome = run_points(POINTS, SETTINGS, ResultsFile(csv, get_format("servemark")),
                         measurer_factory=factory({64}, log))
    assert [p.input_len for p in log] == [16, 32, 64, 128]  # nothing measured twice
    assert (outcome.measured, outcome.skipped) == (2, 2)
    rows = parse_csv(csv.read_text())
    assert [r["input_len_tokens"] for r in rows] == ["16", "32", "64", "128"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "ok"]
    assert rows[2]["error"] == "CUDA out of memory"
    assert rows[0]["hardware"] == "TestGPU"
    # a third run measures nothing; --retry-failed measures only the failed point
    run_points(POINTS, SETTINGS, ResultsFile(csv, get_format("servemark")),
               measurer_factory=factory({64}, log))
    assert len(log) == 4
    run_points(POINTS, SETTINGS, ResultsFile(csv, get_format("servemark")), retry_failed=True,
               measurer_factory=factory(set(), log))
    assert [p.input_len for p in log[4:]] == [64]


def test_site_format_keeps_failures_in_the_journal_only(tmp_path: Path) -> None:
    csv = tmp_path / "hw.csv"
    results = ResultsFile(csv, get_format("hardware"))
    outcome = run_points(POINTS, SETTINGS, results, measurer_factory=factory({32}, []))
    assert len(outcome.failed) == 1
    rows = parse_csv(csv.read_text())
    assert [r["Input Output Length"] for r in rows] == ["16/16", "64/64", "128/128"]
    done = results.done()
    assert len(done) == 4 and sum(not m.ok for m in done.values()) == 1
    with pytest.raises(ResultsError, match="other columns"):
        ResultsFile(csv, get_format("model-name"))


def test_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    results = ResultsFile(csv, get_format("servemark"))
    run_points(POINTS[:1], SETTINGS, results, measurer_factory=factory(set(), []))
    with open(results.journal_path, "ab") as fh:
        fh.write(b'{"key": "offline|m|-|tp1')  # a crash mid-write
    assert len(results.done()) == 1


def test_yaml_spec(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("model: m\ninput-lens: [16, 32]\nbatch_sizes: [1]\n")
    data, lines = load_yaml_spec(spec)
    assert data == {"model": "m", "input_lens": [16, 32], "batch_sizes": [1]}
    assert lines.line(["input_lens"]) == 2
    spec.write_text("- a\n- b\n")
    with pytest.raises(Exception, match="mapping"):
        load_yaml_spec(spec)
