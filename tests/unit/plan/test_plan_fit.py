"""The pre-flight fit check and the largest --max-model-len, against KV capacity computed by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servemark.errors import ConfigError
from servemark.plan.advise import advise
from servemark.plan.arch import parse_hf_config
from servemark.plan.catalog import custom_gpu, get_gpu
from servemark.plan.fit import check_fits, detected_gpu, match_gpu
from servemark.plan.memory import Runtime, plan_memory

# The tiny Llama of servemark.demo (hidden 128, 2 layers, 4 heads, 2 KV heads of 32, MLP 256,
# vocab 1024, untied). Parameters: attention 3 x 128x128 + ... = 49,152 per layer, MLP
# 3 x 128 x 256 = 98,304, norms 256 → 147,712 per layer; blocks 2 x 147,712 + 128 = 295,552;
# embeddings 2 x 1024 x 128 = 262,144; total 557,696 → 1,115,392 bytes in bf16.
TINY = parse_hf_config({
    "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 32, "intermediate_size": 256, "vocab_size": 1024, "tie_word_embeddings": False,
    "max_position_embeddings": 10_000_000, "torch_dtype": "bfloat16", "model_type": "llama"}, "tiny")
GPU1 = custom_gpu(None, memory_gb=1.0, mem_bw_gbs=100.0, tflops=10.0)  # 10^9 bytes
# no fixed overhead, so every byte can be followed by hand
RT = Runtime(gpu_memory_utilization=0.5, max_num_batched_tokens=1000, max_num_seqs=10,
             non_torch_gib=0.0, cuda_graph_gib=0.0)

# TP1 by hand: vLLM's share 0.5 x 10^9 = 500,000,000
#   - weights 1,115,392
#   - activations 1000 tokens x (3 x 128 + 2 x 256 + (128 + 2 x 64)) x 2 bytes = 2,304,000
#   - logits min(10, 1000) x 1024 x 4 bytes = 40,960
#   = KV budget 496,539,648 bytes
# KV per token: 2 (K, V) x 2 layers x 2 KV heads x 32 x 2 bytes = 512; a 16-token block 8,192
# blocks: 496,539,648 / 8,192 = 60,612.75 → 60,612 blocks = 969,792 tokens
BUDGET_TP1 = 500_000_000 - 1_115_392 - 2_304_000 - 40_960
KV_TOKENS_TP1 = (BUDGET_TP1 // (512 * 16)) * 16


def test_hand_computed_figures_match_the_planner() -> None:
    assert TINY.total_params() == 557_696
    mp = plan_memory(TINY, GPU1, 2048, "bf16", "bf16", runtime=RT)
    assert mp.kv_budget_per_gpu_bytes == pytest.approx(BUDGET_TP1) == 496_539_648
    assert mp.kv_tokens == KV_TOKENS_TP1 == 969_792


def test_largest_max_model_len_is_the_kv_capacity() -> None:
    fit = check_fits(TINY, GPU1, max_model_len=2048, runtime=RT)
    assert fit.fits and not fit.problems
    assert fit.largest_max_model_len == 969_792 and fit.kv_tokens == 969_792
    assert fit.max_seqs_at_max_len == min(969_792 // 2048, RT.max_num_seqs)


def test_longer_than_the_kv_cache_is_blocked_with_the_largest_length_as_fix() -> None:
    fit = check_fits(TINY, GPU1, max_model_len=1_000_000, runtime=RT)
    assert not fit.fits
    assert "holds 969792 tokens" in fit.one_line()
    assert "--max-model-len 969792 or less" in fit.one_line()
    assert check_fits(TINY, GPU1, max_model_len=969_792, runtime=RT).fits


def test_capped_by_the_models_positions() -> None:
    short = replace(TINY, max_position_embeddings=2048)
    fit = check_fits(short, GPU1, runtime=RT)
    assert fit.max_model_len == 2048 and fit.largest_max_model_len == 2048 and fit.fits
    too_long = check_fits(short, GPU1, max_model_len=4096, runtime=RT)
    assert not too_long.fits and "exceeds the model's 2048 positions" in too_long.one_line()


def test_tp2_nccl_buffers_leave_no_room() -> None:
    # TP2 by hand: 0.5 GiB NCCL buffers (536,870,912 bytes) alone exceed the 500,000,000 share
    fit = check_fits(TINY, GPU1, tp=2, max_model_len=2048, runtime=RT)
    assert not fit.fits and fit.largest_max_model_len == 0
    assert "leave no room for a KV cache" in fit.one_line()


def test_tp2_on_a_bigger_gpu_halves_kv_per_token() -> None:
    gpu = custom_gpu(None, memory_gb=2.0, mem_bw_gbs=100.0, tflops=10.0)
    # share 10^9; weights 557,696; activations 1000 x (384 + 256 + 128) x 2 = 1,536,000;
    # logits 40,960; NCCL 536,870,912 → budget 460,994,432; KV 256 bytes/token → 4,096/block
    budget = 1_000_000_000 - 557_696 - 1_536_000 - 40_960 - 536_870_912
    fit = check_fits(TINY, gpu, tp=2, max_model_len=2048, runtime=RT)
    assert fit.kv_tokens == (budget // 4096) * 16 == 1_800_752


def test_invalid_tp_is_blocked() -> None:
    fit = check_fits(TINY, GPU1, tp=3, max_model_len=2048, runtime=RT)
    assert not fit.fits and "TP 3 does not divide 4 attention / 2 KV heads" in fit.one_line()


def test_catalog_model_by_name_and_errors_for_unknown_input() -> None:
    assert check_fits("Llama-3.1-8B", "H100", max_model_len=8192).fits
    with pytest.raises(ConfigError):
        check_fits("no-such-model", "H100")
    with pytest.raises(ConfigError):
        check_fits("Llama-3.1-8B", "no-such-gpu")


def test_advice_reports_each_layouts_largest_max_model_len() -> None:
    adv = advise(TINY, GPU1, gpus_per_node=1, context=2048, input_len=100, output_len=100, runtime=RT)
    assert [lay.max_model_len for lay in adv.layouts] == [969_792]
    assert any("largest --max-model-len" in r and "969792" in r for r in adv.reasons)


def test_advice_when_nothing_holds_the_context_names_the_longest_that_fits() -> None:
    short = replace(TINY, max_position_embeddings=None)
    adv = advise(short, GPU1, gpus_per_node=1, context=2_000_000, input_len=100, output_len=100, runtime=RT)
    assert adv.recommended is None
    assert any("--max-model-len 969792 on TP1 x PP1" in r for r in adv.reasons)


@pytest.mark.parametrize(("name", "expected"), [
    ("NVIDIA H100 80GB HBM3", "H100-SXM"), ("NVIDIA H100 PCIe", "H100-PCIe"),
    ("NVIDIA A100-SXM4-40GB", "A100-40GB"), ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
    ("AMD Instinct MI300X", "MI300X"), ("Tesla T4", None)])
def test_match_gpu(name: str, expected: str | None) -> None:
    got = match_gpu(name)
    assert (got.name if got else None) == expected


def test_detected_gpu_uses_the_devices_memory() -> None:
    g = detected_gpu("NVIDIA H100 80GB HBM3", 79.0 * 2**30)
    assert g.name == "H100-SXM" and g.device_total_bytes == 79.0 * 2**30
    assert g.mem_bw_gbs == get_gpu("H100").mem_bw_gbs
    unknown = detected_gpu("Tesla T4", 15.0 * 2**30)
    assert unknown.device_total_bytes == 15.0 * 2**30
