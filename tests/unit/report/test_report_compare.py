"""compare: deltas, bootstrap intervals on synthetic records with known (or no) differences,
throughput across repeats, thresholds, and the CLI gate's exit code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from runfactory import simple_run, synthetic_records
from servemark.cli.main import app
from servemark.errors import ConfigError
from servemark.metrics.summary import summarize
from servemark.report.compare import (
    RunGroup,
    bootstrap_diff,
    check_thresholds,
    compare,
    parse_threshold,
)
from servemark.report.run import RunData


def run_of(label: str, recs_by_point: dict, path: str = "/nowhere") -> RunData:
    points = [summarize(recs, p) for p, recs in recs_by_point.items()]
    records = [r for recs in recs_by_point.values() for r in recs]
    return RunData(Path(path), {"model": label}, points, records, label=label)


def group(label: str, ttft_s: float, seed: int, n: int = 200, itl_s: float = 0.005) -> RunGroup:
    rng = np.random.default_rng(seed)
    return RunGroup(label, [run_of(label, {"c=1": synthetic_records("c=1", n, ttft_s, itl_s, rng)})])


def test_known_ttft_difference_is_detected_with_correct_sign_and_size() -> None:
    comp = compare([group("a", 0.050, 1, n=1000), group("b", 0.060, 2, n=1000)], n_boot=1000, seed=3)
    d = comp.points[0].delta("ttft_p50")
    assert d.significant is True
    assert d.ci_low is not None and d.ci_high is not None
    assert 0 < d.ci_low <= d.abs_delta <= d.ci_high
    assert d.abs_delta == pytest.approx(10.0, abs=4.0)  # true difference of medians: +10 ms
    assert d.rel_delta == pytest.approx(0.2, abs=0.08)
    assert d.unit == "ms" and d.abs_delta == pytest.approx(d.value - d.baseline)
    # ITL was drawn from the same distribution on both sides
    assert comp.points[0].delta("itl_p50").significant is False


def test_identical_distributions_report_no_significant_change() -> None:
    same = group("a", 0.050, 1)
    comp = compare([same, RunGroup("a again", same.runs)], n_boot=1000)
    for m in ("ttft_p50", "tpot_p50", "itl_p50", "e2e_p50"):
        d = comp.points[0].delta(m)
        assert d.abs_delta == 0.0 and d.significant is False, m
    # independent samples of one distribution: false positives near the nominal 5 %, not more
    false_pos = sum(compare([group("a", 0.05, s), group("b", 0.05, 100 + s)], n_boot=500, seed=s)
                    .points[0].delta("ttft_p50").significant for s in range(20))
    assert false_pos <= 3


def test_bootstrap_is_reproducible_with_seed_and_undefined_for_tiny_samples() -> None:
    a, b = np.arange(50.0), np.arange(50.0) + 5
    x = bootstrap_diff(a, b, np.median, np.random.default_rng(7), 500, 0.95)
    y = bootstrap_diff(a, b, np.median, np.random.default_rng(7), 500, 0.95)
    assert x == y
    assert bootstrap_diff(np.array([1.0]), b, np.median, np.random.default_rng(0), 500, 0.95) is None


def test_throughput_interval_across_repeated_runs() -> None:
    def repeats(label: str, itl_s: float, seeds: range) -> RunGroup:
        runs = []
        for s in seeds:
            rng = np.random.default_rng(s)
            runs.append(run_of(label, {"c=1": synthetic_records("c=1", 40, 0.02, itl_s, rng, spread=0.05)}))
        return RunGroup(label, runs)

    comp = compare([repeats("slow", 0.010, range(3)), repeats("fast", 0.005, range(10, 13))], n_boot=500)
    d = comp.points[0].delta("throughput")
    assert d.value > d.baseline * 1.5
    assert d.significant is True and d.ci_low > 0
    # a single run per side: no interval is claimed for throughput
    single = compare([group("a", 0.05, 1), group("b", 0.05, 2)], n_boot=500)
    assert single.points[0].delta("total_tokens_per_s").significant is None


def test_points_are_matched_by_label_and_unmatched_are_listed() -> None:
    rng = np.random.default_rng(0)
    a = RunGroup("a", [run_of("a", {"c=1": synthetic_records("c=1", 20, 0.05, 0.005, rng),
                                    "c=4": synthetic_records("c=4", 20, 0.05, 0.005, rng)})])
    b = RunGroup("b", [run_of("b", {"c=4": synthetic_records("c=4", 20, 0.05, 0.005, rng),
                                    "c=8": synthetic_records("c=8", 20, 0.05, 0.005, rng)})])
    comp = compare([a, b], n_boot=200)
    assert [p.point for p in comp.points] == ["c=4"]
    assert any("c=8" in u for u in comp.unmatched) and any("c=1" in u for u in comp.unmatched)


def test_threshold_parsing_and_evaluation() -> None:
    comp = compare([group("a", 0.050, 1), group("b", 0.060, 2)], n_boot=200)
    t = parse_threshold("ttft_p99 > +10%")
    assert (t.metric, t.op, t.value, t.relative) == ("ttft_p99", ">", 10.0, True)
    assert parse_threshold("e2e_p50 > 0.02s").value == pytest.approx(20.0)
    assert parse_threshold("THROUGHPUT < -5%").metric == "total_tokens_per_s"
    assert [b.threshold for b in check_thresholds(comp, [parse_threshold("ttft_p50 > +10%")])] == ["ttft_p50 > +10%"]
    assert check_thresholds(comp, [parse_threshold("ttft_p50 > +40%")]) == []
    assert check_thresholds(comp, [parse_threshold("ttft_p50 > 5ms")])
    assert check_thresholds(comp, [parse_threshold("throughput > +50%")]) == []
    for bad in ("ttft_p99 >> 1", "bogus > 1%", "throughput > 5ms", "ttft_p99 > ten%"):
        with pytest.raises(ConfigError):
            parse_threshold(bad)


def test_cli_compare_json_and_fail_if_exit_codes(tmp_path: Path) -> None:
    a = simple_run(tmp_path / "a", ttft_s=0.05, seed=1, n=60)
    b = simple_run(tmp_path / "b", ttft_s=0.07, seed=2, n=60)
    runner = CliRunner()
    res = runner.invoke(app, ["compare", str(a), str(b), "--json", "--n-boot", "300"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [p["point"] for p in data["points"]] == ["c=1", "c=4"]
    res = runner.invoke(app, ["compare", str(a), str(b), "--fail-if", "ttft_p50 > +10%", "--n-boot", "300"])
    assert res.exit_code == 1
    assert "threshold crossed" in res.stderr
    res = runner.invoke(app, ["compare", str(a), str(b), "--fail-if", "ttft_p50 > +80%", "--n-boot", "300"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["compare", str(a), str(b), "--fail-if", "nonsense"])
    assert res.exit_code == 2 and "cannot parse threshold" in res.stderr
    res = runner.invoke(app, ["compare", str(a)])
    assert res.exit_code == 2 and "at least two runs" in res.stderr
