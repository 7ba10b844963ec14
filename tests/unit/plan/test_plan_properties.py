"""Monotonicity: memory and latency never shrink as context, batch or lengths grow; more GPUs
never need more memory per GPU."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servemark.plan.catalog import get_gpu, model_names, resolve_model
from servemark.plan.memory import plan_memory
from servemark.plan.predict import Factors, Setup, serving, static_batch

MODELS = st.sampled_from(model_names())
GPUS = st.sampled_from(["H100-SXM", "A100-80GB", "MI300X", "L40S", "Max-1550"])
KV = st.sampled_from(["bf16", "fp8", "fp32"])
F = Factors()


@settings(max_examples=60, deadline=None)
@given(MODELS, GPUS, KV, st.integers(1, 200_000), st.integers(1, 200_000))
def test_memory_monotonic_in_context(model: str, gpu: str, kv: str, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    arch, g = resolve_model(model), get_gpu(gpu)
    p_lo, p_hi = (plan_memory(arch, g, c, "bf16", kv) for c in (lo, hi))
    assert p_lo.kv_context_bytes <= p_hi.kv_context_bytes
    assert p_lo.min_gpus_context <= p_hi.min_gpus_context
    assert p_lo.max_seqs_at_context >= p_hi.max_seqs_at_context


@settings(max_examples=60, deadline=None)
@given(MODELS, GPUS, st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4]))
def test_more_gpus_never_need_more_memory_per_gpu(model: str, gpu: str, tp: int, pp: int) -> None:
    arch, g = resolve_model(model), get_gpu(gpu)
    base = plan_memory(arch, g, 4096, "bf16", "bf16", 1, 1)
    more = plan_memory(arch, g, 4096, "bf16", "bf16", tp, pp)
    assert more.weights_per_gpu_bytes <= base.weights_per_gpu_bytes
    assert more.kv_per_token_per_gpu_bytes <= base.kv_per_token_per_gpu_bytes
    assert more.kv_budget_per_gpu_bytes >= base.kv_budget_per_gpu_bytes - 1  # float noise


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["Llama-3.1-8B", "Mixtral-8x7B", "Qwen2.5-7B"]), st.integers(1, 4000),
       st.integers(1, 4000), st.integers(2, 2000), st.integers(1, 64), st.integers(1, 64))
def test_latency_monotonic_in_lengths_and_concurrency(model: str, i1: int, i2: int, out: int,
                                                      c1: int, c2: int) -> None:
    arch = resolve_model(model)
    s = Setup(arch, get_gpu("H100-SXM"), tp=2 if arch.is_moe else 1)  # Mixtral needs 2 GPUs in bf16
    (ia, ib), (ca, cb) = sorted((i1, i2)), sorted((c1, c2))
    a, b = serving(s, F, ia, out, ca), serving(s, F, ib, out, ca)
    assert a.ttft_s <= b.ttft_s and a.tpot_s <= b.tpot_s * (1 + 1e-9)
    lo, hi = serving(s, F, ia, out, ca), serving(s, F, ia, out, cb)
    assert lo.tpot_s <= hi.tpot_s * (1 + 1e-9) and lo.ttft_s <= hi.ttft_s * (1 + 1e-9)
    assert lo.output_tokens_per_s <= hi.output_tokens_per_s * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 512), st.integers(1, 512), st.integers(1, 2048), st.integers(2, 1024))
def test_static_batch_latency_monotonic_in_batch_and_output(b1: int, b2: int, inp: int, out: int) -> None:
    s = Setup(resolve_model("Llama-2-7B"), get_gpu("A100-80GB"), dtype="fp16", kv_dtype="fp16")
    lo, hi = sorted((b1, b2))
    assert static_batch(s, F, inp, out, lo).e2e_s <= static_batch(s, F, inp, out, hi).e2e_s
    assert static_batch(s, F, inp, out - 1, lo).e2e_s <= static_batch(s, F, inp, out, lo).e2e_s
