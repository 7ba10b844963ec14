"""Model architecture from a Hugging Face ``config.json`` (a plain dict; pure): layer shapes,
grouped-query attention, mixture-of-experts, tied embeddings, and the parameter counts they imply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servemark.errors import ConfigError

# Architectures whose attention projections carry biases (q, k, v); the rest are bias-free.
QKV_BIAS_TYPES = {"qwen2", "qwen2_moe"}


@dataclass(frozen=True)
class ModelArch:
    """The shapes that decide memory and speed. Counts are per model (not per GPU)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool = False
    num_experts: int = 0  # routed experts per MoE layer; 0 = dense
    experts_per_token: int = 0
    moe_intermediate_size: int = 0  # per expert
    shared_expert_intermediate_size: int = 0
    qkv_bias: bool = False
    max_position_embeddings: int | None = None
    sliding_window: int | None = None
    torch_dtype: str | None = None
    nominal_params: float | None = None  # the marketed count (e.g. 70e9), when known
    source: str | None = None

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    # --- parameter counts -------------------------------------------------------------------
    def attention_params_per_layer(self) -> int:
        h = self.hidden_size
        n = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.qkv_bias:
            n += self.q_dim + 2 * self.kv_dim
        return n

    def mlp_params_per_layer(self, active_only: bool = False) -> int:
        """Gated MLP (gate, up, down = 3 matrices). For MoE, all experts or only the active ones."""
        h = self.hidden_size
        if not self.is_moe:
            return 3 * h * self.intermediate_size
        experts = self.experts_per_token if active_only else self.num_experts
        n = experts * 3 * h * self.moe_intermediate_size + h * self.num_experts  # + router
        if self.shared_expert_intermediate_size:
            n += 3 * h * self.shared_expert_intermediate_size
        return n

    def layer_params(self, active_only: bool = False) -> int:
        norms = 2 * self.hidden_size
        return self.attention_params_per_layer() + self.mlp_params_per_layer(active_only) + norms

    def embedding_params(self) -> int:
        """Input embedding plus the LM head (counted once when tied)."""
        emb = self.vocab_size * self.hidden_size
        return emb if self.tie_embeddings else 2 * emb

    def block_params(self, active_only: bool = False) -> int:
        """Parameters inside the transformer blocks (what quantization usually applies to)."""
        return self.num_layers * self.layer_params(active_only) + self.hidden_size  # final norm

    def total_params(self) -> int:
        return self.block_params() + self.embedding_params()

    def active_params(self) -> int:
        """Parameters touched per token (equals total for dense models)."""
        return self.block_params(active_only=True) + self.embedding_params()


def _get(cfg: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    return default


def _need_int(cfg: dict[str, Any], label: str, *names: str) -> int:
    value = _get(cfg, *names)
    if value is None:
        raise ConfigError(f"{label}: config.json has no {names[0]}",
                          "pass a decoder-only transformer config (Llama, Mistral, Mixtral, Qwen2 …)")
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label}: {names[0]} is not an integer ({value!r})", "check the config.json") from None
    if out <= 0:
        raise ConfigError(f"{label}: {names[0]} must be positive, got {out}", "check the config.json")
    return out


def parse_hf_config(cfg: dict[str, Any], name: str = "model", nominal_params: float | None = None,
                    source: str | None = None) -> ModelArch:
    """A ModelArch from a config.json dict. Multimodal configs use their ``text_config``."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{name}: config.json is not a JSON object", "check the file")
    if "text_config" in cfg and "hidden_size" not in cfg and isinstance(cfg["text_config"], dict):
        cfg = {**cfg["text_config"], "torch_dtype": cfg.get("torch_dtype")}
    hidden = _need_int(cfg, name, "hidden_size", "n_embd", "d_model")
    layers = _need_int(cfg, name, "num_hidden_layers", "n_layer", "num_layers")
    heads = _need_int(cfg, name, "num_attention_heads", "n_head")
    kv_heads = int(_get(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv", default=heads))
    if kv_heads <= 0 or heads % kv_heads:
        raise ConfigError(f"{name}: num_key_value_heads {kv_heads} does not divide num_attention_heads {heads}",
                          "check the config.json")
    head_dim = int(_get(cfg, "head_dim", default=0) or 0) or hidden // heads
    inter = _need_int(cfg, name, "intermediate_size", "ffn_dim", "n_inner")
    vocab = _need_int(cfg, name, "vocab_size")
    if cfg.get("kv_lora_rank"):
        raise ConfigError(f"{name}: multi-head latent attention (kv_lora_rank) is not modelled yet",
                          "plan with a GQA/MHA model, or file an issue")
    experts = int(_get(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=0) or 0)
    per_tok = int(_get(cfg, "num_experts_per_tok", "moe_top_k", default=0) or 0)
    if experts and not per_tok:
        raise ConfigError(f"{name}: MoE config has {experts} experts but no num_experts_per_tok",
                          "check the config.json")
    if experts and per_tok > experts:
        raise ConfigError(f"{name}: num_experts_per_tok {per_tok} > experts {experts}", "check the config.json")
    moe_inter = int(_get(cfg, "moe_intermediate_size", default=0) or 0) or inter
    shared = int(_get(cfg, "shared_expert_intermediate_size", default=0) or 0)
    model_type = str(cfg.get("model_type") or "")
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    return ModelArch(
        name=name, hidden_size=hidden, num_layers=layers, num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, intermediate_size=inter, vocab_size=vocab,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        num_experts=experts, experts_per_token=per_tok if experts else 0,
        moe_intermediate_size=moe_inter if experts else 0,
        shared_expert_intermediate_size=shared if experts else 0,
        qkv_bias=bool(cfg.get("attention_bias", False)) or model_type in QKV_BIAS_TYPES,
        max_position_embeddings=cfg.get("max_position_embeddings"),
        sliding_window=int(window) if window else None,
        torch_dtype=cfg.get("torch_dtype") or cfg.get("dtype"),
        nominal_params=nominal_params, source=source,
    )
