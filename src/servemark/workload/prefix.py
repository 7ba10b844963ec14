"""Shared-prefix prompts (pure), the prefix-caching workload: one P-token prefix, unique suffixes.

``prefix_len`` counts the tokens of the shared text itself (it ends with a newline, so the
suffix cannot merge with its last token); ``input_len`` is the whole prompt as the server counts
it, so every suffix is ``input_len − prefix_len − format tokens`` long. For completions the
token ids of the prefix are checked to be an exact prefix of every prompt's ids.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from servemark.errors import ConfigError
from servemark.workload.base import WorkItem
from servemark.workload.lengths import LengthDist
from servemark.workload.synthetic import (
    ATTEMPTS,
    exact_random_text,
    make_spec,
    measure_for,
)
from servemark.workload.tokenizer import Tokenizer

SEPARATOR = "\n"


def shared_prefix(tok: Tokenizer, prefix_len: int, rng: random.Random) -> str:
    """Random-token text of exactly ``prefix_len`` tokens, newline included."""
    def measure(text: str) -> int:
        return len(tok.encode_body(text + SEPARATOR))

    return exact_random_text(tok, prefix_len, measure, rng) + SEPARATOR


def shared_ids(tok: Tokenizer, prefix: str) -> list[int]:
    """Ids every prompt starting with ``prefix`` must start with: leading specials (BOS, CLS)
    and the prefix's own ids, without specials a tokenizer appends at the end (SEP)."""
    full, body = tok.encode(prefix), tok.encode_body(prefix)
    for lead in range(len(full) - len(body) + 1):
        if full[lead: lead + len(body)] == body:
            return full[: lead + len(body)]
    return body


@dataclass(frozen=True)
class PrefixWorkload:
    """``n`` prompts: the same ``prefix_len``-token prefix, then a unique random suffix."""

    input_len: LengthDist
    output_len: LengthDist
    prefix_len: int
    api: str = "completions"
    name: str = "prefix"

    def build(self, tok: Tokenizer, n: int, rng: random.Random, first_id: int = 0) -> list[WorkItem]:
        prefix = shared_prefix(tok, self.prefix_len, rng)
        measure = measure_for(tok, self.api, prefix)
        overhead = measure("")
        head = shared_ids(tok, prefix) if self.api == "completions" else None
        out: list[WorkItem] = []
        for i in range(n):
            length, olen = self.input_len.sample(rng), self.output_len.sample(rng)
            if length <= overhead:
                raise ConfigError(
                    f"input length {length} leaves no room for a suffix after the "
                    f"{self.prefix_len}-token prefix ({overhead} tokens with the prompt format)",
                    f"use --input-len {overhead + 1} or more, or a shorter --prefix-len",
                )
            for _ in range(ATTEMPTS):
                suffix = exact_random_text(tok, length, measure, rng, overhead)
                if head is None or tok.encode(prefix + suffix)[: len(head)] == head:
                    break
            else:
                raise ConfigError(
                    f"{tok.name} merges the shared prefix with every suffix tried",
                    "try another --prefix-len or --seed",
                )
            out.append(make_spec(first_id + i, self.api, prefix + suffix, length, olen))
        return out
