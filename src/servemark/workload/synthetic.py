"""Token-exact random prompts (pure, given a tokenizer and an RNG).

Token ids are sampled from the tokenizer's candidates (no special tokens, decoded text longer
than 2 characters), decoded to text, and the text is re-measured and corrected — adding sampled
tokens when short, cutting tokens when long — until the target tokenizer counts exactly the
requested length. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from servemark.client.openai import RequestSpec
from servemark.errors import ConfigError
from servemark.workload.tokenizer import Tokenizer

MAX_ROUNDS = 64


def exact_text(
    target: int,
    measure: Callable[[str], int],
    tok: Tokenizer,
    candidates: Sequence[int],
    rng: random.Random,
    overhead: int = 0,
) -> str:
    """Text whose ``measure`` is exactly ``target``; ``overhead`` is the measure of empty text."""
    body = [rng.choice(candidates) for _ in range(max(target - overhead, 1))]
    text = tok.decode(body)
    for _ in range(MAX_ROUNDS):
        diff = target - measure(text)
        if diff == 0:
            return text
        body = tok.encode_body(text)
        if diff > 0:
            body.extend(rng.choice(candidates) for _ in range(diff))
        else:
            keep = len(body) + diff
            if keep <= 0:
                raise ConfigError(
                    f"input length {target} is shorter than the tokens the prompt format adds "
                    f"({measure('')})",
                    f"use --input-len {measure('') + 1} or more",
                )
            body = body[:keep]
        text = tok.decode(body)
    # Pathological merges: start again from different random tokens.
    raise _NoConvergence(target)


class _NoConvergence(RuntimeError):
    pass


def random_prompts(
    tok: Tokenizer,
    n: int,
    input_len: int,
    output_len: int,
    api: str,
    rng: random.Random,
    first_id: int = 0,
) -> Iterator[RequestSpec]:
    """``n`` distinct requests of exactly ``input_len`` prompt tokens (chat: template applied)."""
    candidates = tok.candidate_ids()
    if api == "chat":
        def measure(text: str) -> int:
            return tok.count_chat([{"role": "user", "content": text}])
    else:
        def measure(text: str) -> int:
            return len(tok.encode(text))
    overhead = measure("")
    if input_len <= overhead:
        raise ConfigError(
            f"--input-len {input_len} leaves no room for a prompt: the {api} format alone takes "
            f"{overhead} tokens",
            f"use --input-len {overhead + 1} or more",
        )
    for i in range(n):
        for _attempt in range(8):
            try:
                text = exact_text(input_len, measure, tok, candidates, rng, overhead)
                break
            except _NoConvergence:
                continue
        else:
            raise ConfigError(
                f"could not build a prompt of exactly {input_len} tokens with {tok.name}",
                "try another --input-len or --seed",
            )
        if api == "chat":
            yield RequestSpec(first_id + i, api, messages=({"role": "user", "content": text},),
                              input_len=input_len, output_len=output_len)
        else:
            yield RequestSpec(first_id + i, api, prompt=text, input_len=input_len,
                              output_len=output_len)
