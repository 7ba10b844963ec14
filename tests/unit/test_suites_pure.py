"""Pure parts of the FOM/sweep suites: matrices, FLOP formulas, statistics, CSV formats."""

from __future__ import annotations

import random
import signal

import numpy as np
import pytest

from servemark.errors import ConfigError
from servemark.offline.engineargs import parse_assignments, parse_engine_args
from servemark.offline.prompts import candidate_ids, iteration_prompts
from servemark.offline.runner import engine_args, explain_exit, precheck
from servemark.suites.csvformat import FORMATS, get_format, parse_csv, render_rows
from servemark.suites.flops import ModelShape, decode_flops, flop_rate, prefill_flops
from servemark.suites.fom import DEFAULT_SCENARIOS, FomResult, fom_points
from servemark.suites.hardware import Hardware, is_local_url, parse_cpuinfo
from servemark.suites.matrix import SweepSpec, expand, make_sweep_spec
from servemark.suites.measurement import Measurement, failed, latency_stats
from servemark.suites.modelconfig import shape_from_config
from servemark.suites.point import Point, RunSettings


def ok_measurement(point: Point, latencies: list[float], **kw: object) -> Measurement:
    n = len(latencies)
    return Measurement(point=point, mode="offline", model="m", status="ok",
                       latencies_s=latencies,
                       input_tokens=[point.batch_size * point.input_len] * n,
                       output_tokens=[point.batch_size * point.output_len] * n, **kw)  # type: ignore[arg-type]


# ---- matrix ---------------------------------------------------------------------------------

def test_default_matrix_is_the_papers_matrix() -> None:
    points = SweepSpec(model="m").points()
    assert len(points) == 3 * 4 * 5
    assert {p.tensor_parallel for p in points} == {1, 2, 4}
    assert {p.batch_size for p in points} == {1, 16, 32, 64}
    assert {p.input_len for p in points} == {128, 256, 512, 1024, 2048}
    assert all(p.input_len == p.output_len for p in points)
    # TP outermost: all TP 1 points come first
    assert [p.tensor_parallel for p in points[:20]] == [1] * 20


def test_expand_crosses_output_lengths_and_drops_duplicates() -> None:
    points = expand([16, 32], [1, 64], [2, 2], [1])
    assert [(p.input_len, p.output_len, p.batch_size) for p in points] == [
        (16, 1, 2), (16, 64, 2), (32, 1, 2), (32, 64, 2)]


def test_online_sweep_defaults_to_one_tp_and_rejects_several() -> None:
    spec = make_sweep_spec({"mode": "online", "base_url": "http://h:1"})
    assert spec.effective_tp_sizes == [1]
    with pytest.raises(ConfigError, match="one TP"):
        make_sweep_spec({"mode": "online", "base_url": "http://h:1", "tp_sizes": [1, 2]})
    with pytest.raises(ConfigError, match="needs model"):
        make_sweep_spec({"mode": "offline"})
    with pytest.raises(ConfigError, match="batch_sizes"):
        make_sweep_spec({"model": "m", "batch_sizes": [0]})
    with pytest.raises(ConfigError, match="bogus"):
        make_sweep_spec({"model": "m", "bogus": 1})


def test_point_keys_differ_on_every_axis() -> None:
    base = Point(128, 128, 16, 1)
    variants = [Point(256, 128, 16, 1), Point(128, 256, 16, 1), Point(128, 128, 32, 1),
                Point(128, 128, 16, 2), Point(128, 128, 16, 1, 2), Point(128, 128, 16, 1, 1, 4096),
                Point(128, 128, 16, 1, scenario="FOM1")]
    keys = {p.key("offline", "m") for p in [base, *variants]}
    assert len(keys) == len(variants) + 1
    assert base.key("offline", "m") != base.key("online", "m") != base.key("offline", "n")


# ---- FLOP-rate form ------------------------------------------------------------------------

def test_flop_formulas_match_the_site_definition() -> None:
    shape = ModelShape(num_layers=2, hidden_size=4)
    # C_prefill = b·N·(6d²·T_in + d·T_in²) = 3·2·(6·16·5 + 4·25) = 6·(480 + 100)
    assert prefill_flops(3, shape, 5) == 3480.0
    # C_decode = b·N·T_out·6d² = 3·2·7·96
    assert decode_flops(3, shape, 7) == 4032.0
    assert flop_rate(3, shape, 5, 7, 2.0) == pytest.approx((3480 + 4032) / 2)
    with pytest.raises(ValueError):
        flop_rate(1, shape, 1, 1, 0.0)


def test_shape_from_config_plain_and_nested() -> None:
    assert shape_from_config({"num_hidden_layers": 32, "hidden_size": 4096}) == ModelShape(32, 4096)
    assert shape_from_config({"text_config": {"num_hidden_layers": 2, "hidden_size": 8}}) == \
        ModelShape(2, 8)
    assert shape_from_config({"n_layer": 12, "n_embd": 768}) == ModelShape(12, 768)
    assert shape_from_config({"vocab_size": 10}) is None


# ---- statistics and measurements -----------------------------------------------------------

def test_latency_percentiles_agree_with_numpy() -> None:
    values = [random.Random(3).uniform(0.1, 2.0) for _ in range(37)]
    stats = latency_stats(values)
    for q in (10, 25, 50, 75, 90, 99):
        assert getattr(stats, f"p{q}") == pytest.approx(float(np.percentile(values, q)))
    assert stats.mean == pytest.approx(float(np.mean(values)))
    assert latency_stats([]).p50 is None


def test_throughput_is_batch_times_lengths_over_mean_latency() -> None:
    p = Point(100, 20, 4)
    m = ok_measurement(p, [1.0, 2.0, 3.0])
    assert m.tokens_exact
    assert m.throughput_tokens_per_s == pytest.approx(4 * 120 / 2.0)
    assert m.output_tokens_per_s == pytest.approx(4 * 20 / 2.0)
    m.output_tokens[1] -= 1
    assert not m.tokens_exact
    f = failed(p, "offline", "m", "boom\n  on two lines")
    assert f.error == "boom on two lines"
    assert f.throughput_tokens_per_s is None and f.latency.mean is None and not f.tokens_exact


def test_flop_rate_needs_the_shape() -> None:
    p = Point(5, 7, 3)
    m = ok_measurement(p, [2.0])
    assert m.flop_rate_per_s is None
    m.flops_prefill, m.flops_decode = 3480.0, 4032.0
    assert m.flop_rate_per_s == pytest.approx(3756.0)


def test_measurement_round_trips_through_a_dict() -> None:
    m = ok_measurement(Point(8, 4, 2, 2, 1, 64, "FOM2"), [0.5, 0.7], hardware="H100")
    again = Measurement.from_dict({**m.to_dict(), "field_from_the_future": 1})
    assert again == m


def test_fom_total_is_the_sum_of_throughputs_only_when_complete() -> None:
    points = fom_points(DEFAULT_SCENARIOS, 2)
    assert [(p.scenario, p.input_len, p.output_len, p.max_model_len) for p in points] == [
        ("FOM1", 8192, 1, None), ("FOM2", 512, 8192, None), ("FOM3", 8192, 8192, 32768)]
    results = [ok_measurement(p, [float(i + 1)]) for i, p in enumerate(points)]
    total = sum(m.throughput_tokens_per_s or 0 for m in results)
    assert FomResult(results).total_throughput_tokens_per_s == pytest.approx(total)
    assert FomResult(results).total_flop_rate_per_s is None  # no model shape
    results[1] = failed(points[1], "offline", "m", "out of memory")
    assert FomResult(results).total_throughput_tokens_per_s is None


# ---- CSV formats ---------------------------------------------------------------------------

def test_every_format_parses_back_with_its_columns() -> None:
    m = ok_measurement(Point(128, 64, 16, 2, 1, 4096), [1.0, 1.5], hardware="NVIDIA H100",
                       num_hardware=2, precision="bfloat16")
    for fmt in FORMATS.values():
        rows = parse_csv(render_rows(fmt, [r for r in [fmt.row(m)] if r is not None]))
        assert len(rows) == 1
        assert tuple(rows[0]) == fmt.columns
    hw = parse_csv(render_rows(get_format("hardware"), [get_format("hardware").row(m)]))[0]  # type: ignore[list-item]
    assert hw["Input Output Length"] == "128/64" and hw["Num of Hardware"] == "2"
    assert float(hw["Throughput"]) == pytest.approx(16 * 192 / 1.25, abs=1e-3)
    mn = parse_csv(render_rows(get_format("model-name"), [get_format("model-name").row(m)]))[0]  # type: ignore[list-item]
    assert (mn["precision"], mn["tensor_parallel"], mn["context_length"]) == ("bfloat16", "2", "4096")
    assert float(mn["latency"]) == pytest.approx(1.25)


def test_failed_points_only_in_our_format() -> None:
    f = failed(Point(4096, 1, 1), "offline", "m", "input too long")
    assert FORMATS["hardware"].row(f) is None and FORMATS["model-name"].row(f) is None
    row = parse_csv(render_rows(FORMATS["servemark"], [FORMATS["servemark"].row(f)]))[0]  # type: ignore[list-item]
    assert (row["status"], row["error"], row["throughput_tokens_per_s"]) == (
        "failed", "input too long", "")
    with pytest.raises(ConfigError, match="unknown CSV format"):
        get_format("excel")


# ---- offline pieces ------------------------------------------------------------------------

def test_prompts_are_exact_distinct_and_free_of_special_tokens() -> None:
    cands = candidate_ids(50, {0, 1, 2})
    batches = iteration_prompts(4, 33, 3, cands, seed=7)
    flat = [tuple(p) for b in batches for p in b]
    assert len(flat) == 12 and len(set(flat)) == 12
    assert all(len(p) == 33 and not {0, 1, 2} & set(p) for p in flat)
    assert iteration_prompts(4, 33, 3, cands, seed=7) == batches


def test_engine_args_pass_through() -> None:
    args = parse_engine_args(["--max-num-seqs", "256", "--enable-chunked-prefill",
                              "--no-enable-prefix-caching", "--kv-cache-dtype=fp8",
                              "--compilation-config", '{"level": 3}', "--swap-space", "-1"])
    assert args == {"max_num_seqs": 256, "enable_chunked_prefill": True,
                    "enable_prefix_caching": False, "kv_cache_dtype": "fp8",
                    "compilation_config": {"level": 3}, "swap_space": -1}
    assert parse_assignments(["block-size=32", "trust_remote_code=true"]) == {
        "block_size": 32, "trust_remote_code": True}
    with pytest.raises(ConfigError):
        parse_assignments(["novalue"])
    with pytest.raises(ConfigError):
        parse_engine_args(["stray"])
    s = RunSettings(mode="offline", model="m", dtype="float16", engine_args={"max_num_seqs": 8})
    built = engine_args(Point(16, 16, 2, 2, 1, 128), s)
    assert built == {"max_num_seqs": 8, "tensor_parallel_size": 2, "pipeline_parallel_size": 1,
                     "max_model_len": 128, "dtype": "float16", "seed": 0}


def test_precheck_and_exit_explanations() -> None:
    assert "longer than max-model-len 100" in (precheck(Point(101, 1, 1, max_model_len=100)) or "")
    assert precheck(Point(100, 50, 1, max_model_len=100)) is None
    assert "SIGKILL" in explain_exit(-signal.SIGKILL, [])
    oom = explain_exit(1, ["x", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"])
    assert oom.startswith("out of memory")
    assert "ValueError: bad" in explain_exit(1, ["ValueError: bad", "exiting"])


def test_cpuinfo_and_devices_used() -> None:
    text = "processor\t: 0\nmodel name\t: AMD EPYC 7763\nphysical id\t: 0\n\n" \
           "processor\t: 1\nmodel name\t: AMD EPYC 7763\nphysical id\t: 1\n"
    hw = parse_cpuinfo(text)
    assert hw == Hardware("AMD EPYC 7763", 2, "cpu") and hw.used(4, 1) == 2
    assert Hardware("NVIDIA H100", 8, "gpu").used(4, 2) == 8
    assert is_local_url("http://127.0.0.1:8000") and not is_local_url("http://gpu-node:8000")
