"""The published Llama 3.1 figures for 80 GB GPUs: reproduced under their assumptions, and the
correct figures by default."""

from __future__ import annotations

import pytest

from servemark.plan.catalog import GIB, get_gpu, resolve_model
from servemark.plan.memory import kv_bytes_per_token, plan_memory

H100 = get_gpu("H100-80GB")


def test_70b_published_figures_under_nominal_params() -> None:
    mp = plan_memory(resolve_model("Llama-3.1-70B"), H100, 128_000, "bf16", "bf16", params_override=70e9)
    assert mp.weights.bytes / 1e9 == pytest.approx(140.0)
    assert round(mp.kv_context_bytes / GIB, 2) == 39.06
    assert (mp.min_gpus_weights, mp.min_gpus_context) == (2, 3)


def test_70b_correct_figures_by_default() -> None:
    arch = resolve_model("Llama-3.1-70B")
    mp = plan_memory(arch, H100, 128_000, "bf16", "bf16")
    assert arch.total_params() == 70_553_706_496
    assert round(mp.weights.bytes / 1e9, 2) == 141.11
    assert round(mp.kv_context_bytes / GIB, 2) == 39.06  # bf16 KV: the published figure is right
    assert (mp.min_gpus_weights, mp.min_gpus_context) == (2, 3)


def test_405b_published_figures_need_nominal_params_and_fp32_kv() -> None:
    mp = plan_memory(resolve_model("Llama-3.1-405B"), H100, 128_000, "bf16", "fp32", params_override=405e9)
    assert mp.weights.bytes / 1e9 == pytest.approx(810.0)
    assert round(mp.kv_context_bytes / GIB, 2) == 123.05
    assert (mp.min_gpus_weights, mp.min_gpus_context) == (11, 12)


def test_405b_correct_figures_by_default() -> None:
    arch = resolve_model("Llama-3.1-405B")
    mp = plan_memory(arch, H100, 128_000, "bf16", "bf16")
    assert round(arch.total_params() / 1e9, 2) == 405.85
    assert kv_bytes_per_token(arch, "bf16") == 2 * 126 * 8 * 128 * 2
    assert round(mp.kv_context_bytes / GIB, 2) == 61.52
    assert round(mp.weights.bytes / 1e9, 1) == 811.7
    # bf16 KV: weights plus one full context fit in 11 GPUs, not the published 12
    assert (mp.min_gpus_weights, mp.min_gpus_context) == (11, 11)


def test_vllm_budget_follows_its_formula() -> None:
    """KV budget = reported total x utilization - weights/GPU - overhead; blocks of 16 tokens."""
    arch = resolve_model("Llama-3.1-70B")
    mp = plan_memory(arch, H100, 128_000, "bf16", "bf16", tp=4)
    expect = 79.10 * GIB * 0.9 - mp.weights.bytes / 4 - sum(mp.overhead_per_gpu.values())
    assert mp.kv_budget_per_gpu_bytes == pytest.approx(expect)
    per_gpu_token = 2 * 80 * 2 * 128 * 2  # 8 KV heads / TP4 = 2 per GPU
    assert mp.kv_per_token_per_gpu_bytes == per_gpu_token
    assert mp.kv_blocks == int(expect // (per_gpu_token * 16))
    assert mp.max_seqs_at_context == mp.kv_blocks // (128_000 // 16)
    # TP2 holds the weights but not one 128k sequence; TP4 holds three
    assert plan_memory(arch, H100, 128_000, "bf16", "bf16", tp=2).max_seqs_at_context == 0
    assert mp.max_seqs_at_context == 3


def test_quantized_weights_keep_embeddings_16bit() -> None:
    arch = resolve_model("Llama-3.1-70B")
    fp8 = plan_memory(arch, H100, 8192, "fp8", "bf16").weights.bytes
    assert fp8 == pytest.approx(arch.block_params() + 2 * arch.embedding_params())
    int4 = plan_memory(arch, H100, 8192, "int4", "bf16").weights.bytes
    assert arch.total_params() * 0.5 < int4 < fp8


def test_kv_heads_replicate_when_tp_exceeds_them() -> None:
    arch = resolve_model("Llama-3.1-405B")  # 8 KV heads
    at8 = plan_memory(arch, H100, 1000, "bf16", "bf16", tp=8).kv_per_token_per_gpu_bytes
    at16 = plan_memory(arch, H100, 1000, "bf16", "bf16", tp=16).kv_per_token_per_gpu_bytes
    assert at8 == at16 == 2 * 126 * 1 * 128 * 2
