"""serve/run pre-flight: the planner's verdict on vLLM flags for the node's GPU."""

from __future__ import annotations

from servemark.deploy.preflight import fit_warning, flag_value

H100 = ("NVIDIA H100 80GB HBM3", 80 * 1e9)


def test_flag_values_in_both_spellings() -> None:
    args = ["--max-model-len=8192", "--dtype", "bfloat16", "--max-model-len", "4096"]
    assert flag_value(args, "--max-model-len") == "4096"
    assert flag_value(args, "--dtype") == "bfloat16"
    assert flag_value(args, "--kv-cache-dtype") is None


def test_70b_on_one_h100_is_refused_with_the_reason() -> None:
    warning = fit_warning("llama-3.1-70b", ["--max-model-len", "8192"], H100)
    assert warning is not None and "will not fit" in warning and "TP1" in warning


def test_70b_at_tp4_with_a_short_context_fits() -> None:
    assert fit_warning("llama-3.1-70b", ["--tensor-parallel-size", "4", "--max-model-len", "8192"],
                       H100) is None


def test_tp_that_does_not_divide_heads_is_refused() -> None:
    warning = fit_warning("llama-3.1-8b", ["-tp", "3"], H100)
    assert warning is not None and "TP 3 does not divide" in warning


def test_cannot_judge_says_nothing() -> None:
    assert fit_warning("llama-3.1-8b", [], None) is None  # no GPU (CPU node)
    assert fit_warning("/no/such/model", [], H100) is None  # unknown model: vLLM will judge
    assert fit_warning("llama-3.1-8b", ["--max-model-len", "lots"], H100) is None
