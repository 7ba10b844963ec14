"""The FLOP-rate figure of merit some sites report (pure).

As the sites define it (quoted in issue 7), for b sequences, N layers, hidden size d:

    C_prefill = b · N · (6·d²·T_in + d·T_in²)
    C_decode  = b · N · T_out · 6·d²
    FOM       = (C_prefill + C_decode) / latency          [FLOP/s]

It is a site convention (it counts neither attention during decode nor the LM head), kept as
defined so numbers compare with theirs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What the formula needs from a model config: layers N and hidden size d."""

    num_layers: int
    hidden_size: int


def prefill_flops(batch: int, shape: ModelShape, input_len: int) -> float:
    n, d = shape.num_layers, shape.hidden_size
    return float(batch * n * (6 * d * d * input_len + d * input_len * input_len))


def decode_flops(batch: int, shape: ModelShape, output_len: int) -> float:
    n, d = shape.num_layers, shape.hidden_size
    return float(batch * n * output_len * 6 * d * d)


def flop_rate(batch: int, shape: ModelShape, input_len: int, output_len: int,
              latency_s: float) -> float:
    """FLOP/s of one batch that took ``latency_s`` seconds."""
    if latency_s <= 0:
        raise ValueError("latency must be positive")
    total = prefill_flops(batch, shape, input_len) + decode_flops(batch, shape, output_len)
    return total / latency_s
