"""Predictor structure, advice, calibration fit and the validation split."""

from __future__ import annotations

import pytest

from servemark.errors import ConfigError
from servemark.plan.advise import advise, valid_tp_sizes
from servemark.plan.calibrate import Point, compare, fit, mape
from servemark.plan.catalog import catalog_model, get_gpu, measurement_data, resolve_model
from servemark.plan.predict import FIT_START, Factors, Setup, serving, static_batch
from servemark.plan.validate import published_points, refit_defaults, validate

H100 = get_gpu("H100-SXM")


def test_decode_is_memory_bound_at_batch_one_and_prefill_compute_bound() -> None:
    p = serving(Setup(resolve_model("Llama-3.1-70B"), H100, tp=4), Factors(), 4000, 200, 1)
    assert p.decode_bound == "memory" and p.prefill_bound == "compute"
    # batch-1 TPOT is at least the time to stream the weights once at peak bandwidth
    assert p.tpot_s > 141e9 / 4 / (3350e9)


def test_tp_trades_latency_for_allreduce() -> None:
    arch = resolve_model("Llama-3.1-70B")
    tp4 = serving(Setup(arch, H100, tp=4), Factors(), 1000, 200, 1)
    tp8 = serving(Setup(arch, H100, tp=8), Factors(), 1000, 200, 1)
    no_link = serving(Setup(arch, H100, tp=8), Factors(comm_eff=1e-3), 1000, 200, 1)
    assert tp8.tpot_s < tp4.tpot_s < no_link.tpot_s


def test_pipeline_bubble_below_pp_microbatches() -> None:
    s = Setup(resolve_model("Llama-3.1-8B"), H100, pp=4)
    one, four = serving(s, Factors(), 100, 100, 1), serving(s, Factors(), 100, 100, 4)
    assert four.output_tokens_per_s > 3 * one.output_tokens_per_s  # bubbles filled


def test_queueing_when_kv_cache_is_full() -> None:
    s = Setup(resolve_model("Llama-3.1-70B"), H100, tp=2, dtype="fp8", kv_dtype="fp8")
    p = serving(s, Factors(), 5000, 500, 250)
    assert p.queued and p.batch < 250 and p.ttft_s > 10


def test_invalid_tp_and_lengths_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="TP 3"):
        serving(Setup(resolve_model("Llama-3.1-8B"), H100, tp=3), Factors(), 10, 10, 1)
    with pytest.raises(ConfigError, match="at least 1"):
        serving(Setup(resolve_model("Llama-3.1-8B"), H100), Factors(), 0, 10, 1)
    with pytest.raises(ConfigError, match="does not fit"):
        serving(Setup(resolve_model("Llama-3.1-405B"), H100), Factors(), 10, 10, 1)


def test_valid_tp_sizes_follow_heads() -> None:
    assert valid_tp_sizes(resolve_model("Llama-3.1-70B"), 8) == [1, 2, 4, 8]
    assert valid_tp_sizes(resolve_model("Qwen2.5-7B"), 8) == [1, 2, 4]  # 28 heads, 4 KV heads


def test_advise_prefers_replicas_when_model_fits() -> None:
    adv = advise(resolve_model("Llama-3.1-8B"), H100, 8)
    assert adv.recommended is not None
    assert (adv.recommended.tp, adv.recommended.pp, adv.recommended.replicas) == (1, 1, 8)
    assert any("valid TP" in r for r in adv.reasons)


def test_advise_needs_tp_for_big_models_and_reports_no_fit() -> None:
    adv = advise(resolve_model("Llama-3.1-70B"), H100, 8, context=128_000)
    assert adv.recommended is not None and adv.recommended.tp >= 4
    none = advise(resolve_model("Llama-3.1-405B"), get_gpu("L40S"), 8, context=128_000)
    assert none.recommended is None and any("no layout" in r for r in none.reasons)


def test_fit_recovers_known_factors_from_synthetic_points() -> None:
    truth = Factors(mfu=0.4, mbu=0.6, step_overhead_s=0.003, request_overhead_s=0.02)
    setup = Setup(resolve_model("Llama-3.1-8B"), H100)
    pts = []
    for conc, inp in ((1, 128), (8, 2000), (32, 512), (64, 4000)):
        p = serving(setup, truth, inp, 256, conc)
        pts.append(Point(f"c{conc}", setup, "serving", inp, 256, conc,
                         {"ttft_ms": p.ttft_s * 1e3, "itl_ms": p.tpot_s * 1e3,
                          "output_tokens_per_s": p.output_tokens_per_s}))
    fitted = fit(pts, Factors(**FIT_START))
    assert max(e for e, _ in mape(compare(pts, fitted)).values()) < 2.0
    assert fitted.mbu == pytest.approx(0.6, rel=0.1)


def test_shipped_defaults_come_from_calibration_rows_only() -> None:
    refit = refit_defaults()
    default = Factors()
    for name in ("mfu", "mbu", "comm_eff", "step_overhead_s", "allreduce_latency_s"):
        assert getattr(refit, name) == pytest.approx(getattr(default, name), rel=0.02), name


def test_validation_rows_are_separate_and_sourced() -> None:
    data = measurement_data()
    sets = {r["set"] for r in data["rows"]}
    assert sets == {"calibration", "validation"}
    for r in data["rows"]:
        assert r["source"] in data["sources"] and catalog_model(r["model"]) is not None
    cal = {p.label for p in published_points("calibration")}
    val = {p.label for p in published_points("validation")}
    assert cal and val and not cal & val
    # the validation sources share nothing with the calibration source
    cal_src = {r["source"] for r in data["rows"] if r["set"] == "calibration"}
    val_src = {r["source"] for r in data["rows"] if r["set"] == "validation"}
    assert not cal_src & val_src


def test_validate_reports_every_row_and_metric() -> None:
    v = validate()
    n_metrics = sum(len(r["measured"]) for r in measurement_data()["rows"])
    assert len(v.rows) == n_metrics
    val = v.mape("validation")
    assert set(val) == {"ttft_ms", "itl_ms", "output_tokens_per_s", "e2e_ms"}
    assert all(err > 0 for err, _ in val.values())


def test_static_prediction_per_gpu_division() -> None:
    s = Setup(resolve_model("Llama-2-70B"), H100, tp=2, dtype="fp8", kv_dtype="fp8")
    total = static_batch(s, Factors(), 128, 128, 64).output_tokens_per_s
    pt = Point("x", s, "static", 128, 128, 64, {"output_tokens_per_s": 1.0}, per_gpu=True)
    assert compare([pt], Factors())[0].predicted == pytest.approx(total / 2)
