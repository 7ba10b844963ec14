"""Random token-id prompts for vllm.LLM (pure): exact lengths with no tokenizer round trip.

Token ids are passed to the engine as they are, so a prompt of I ids is exactly I tokens.
Special tokens are excluded (an EOS or BOS in the middle of a prompt changes what is measured),
and every prompt of every iteration is distinct so prefix caching cannot skip prefill.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from servemark.errors import ConfigError


def candidate_ids(vocab_size: int, special_ids: Collection[int]) -> list[int]:
    special = set(special_ids)
    out = [i for i in range(vocab_size) if i not in special]
    if not out:
        raise ConfigError("the tokenizer has no ordinary tokens to build prompts from",
                          "check the model's tokenizer")
    return out


def random_token_prompts(batch: int, length: int, candidates: list[int],
                         rng: random.Random) -> list[list[int]]:
    """``batch`` prompts of exactly ``length`` token ids drawn from ``candidates``."""
    if batch < 1 or length < 1:
        raise ConfigError("batch size and input length must be ≥ 1", "check --batch-size/--input-len")
    return [[rng.choice(candidates) for _ in range(length)] for _ in range(batch)]


def iteration_prompts(batch: int, length: int, iterations: int, candidates: list[int],
                      seed: int) -> list[list[list[int]]]:
    """One distinct batch per iteration (warm-up included), deterministic for ``seed``."""
    rng = random.Random(seed)
    return [random_token_prompts(batch, length, candidates, rng) for _ in range(iterations)]
