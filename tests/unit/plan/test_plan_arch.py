"""Parsing real-shaped config.json files: GQA, MoE, tied embeddings, biases, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servemark.errors import ConfigError
from servemark.plan.arch import parse_hf_config
from servemark.plan.catalog import resolve_model

CONFIGS = Path(__file__).parent / "configs"


def test_gqa_llama_from_file_matches_catalog() -> None:
    arch = resolve_model(str(CONFIGS / "llama-3.1-70b.json"))
    assert (arch.num_heads, arch.num_kv_heads, arch.head_dim) == (64, 8, 128)
    assert arch.total_params() == resolve_model("Llama-3.1-70B").total_params()
    assert not arch.is_moe and not arch.tie_embeddings


def test_moe_counts_total_and_active_parameters() -> None:
    arch = resolve_model(str(CONFIGS / "mixtral-8x7b.json"))
    assert (arch.num_experts, arch.experts_per_token) == (8, 2)
    assert round(arch.total_params() / 1e9, 1) == 46.7  # Mistral's published 46.7B total
    assert round(arch.active_params() / 1e9, 1) == 12.9  # and 12.9B active
    assert arch.sliding_window is None


def test_tied_embeddings_count_once_and_head_dim_is_read() -> None:
    arch = resolve_model(str(CONFIGS / "llama-3.2-1b.json"))
    assert arch.tie_embeddings and arch.head_dim == 64
    assert round(arch.total_params() / 1e9, 2) == 1.24  # Meta's published 1.24B
    untied = parse_hf_config({**json.loads((CONFIGS / "llama-3.2-1b.json").read_text()),
                              "tie_word_embeddings": False})
    assert untied.total_params() - arch.total_params() == 128256 * 2048


def test_qwen2_has_qkv_bias_and_disabled_sliding_window() -> None:
    arch = resolve_model(str(CONFIGS / "qwen2.5-7b.json"))
    assert arch.qkv_bias and arch.sliding_window is None
    assert round(arch.total_params() / 1e9, 2) == 7.62  # Qwen's published 7.61B (rounded up here)


def test_directory_with_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((CONFIGS / "mixtral-8x7b.json").read_text())
    assert resolve_model(str(tmp_path)).is_moe


def test_cached_hub_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "models--acme--tiny-70b" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text((CONFIGS / "llama-3.1-70b.json").read_text())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert resolve_model("acme/tiny-70b").num_layers == 80


@pytest.mark.parametrize("cfg, fragment", [
    ({"num_hidden_layers": 2}, "hidden_size"),
    ({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 4,
      "intermediate_size": 128, "vocab_size": 10}, "does not divide"),
    ({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
      "vocab_size": 10, "num_local_experts": 8}, "num_experts_per_tok"),
    ({"hidden_size": "big", "num_hidden_layers": 2}, "not an integer"),
])
def test_bad_configs_raise_config_error(cfg: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_hf_config(cfg, "bad")


def test_invalid_json_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve_model(str(bad))
