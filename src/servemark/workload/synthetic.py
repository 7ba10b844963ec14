"""Token-exact prompts (pure, given a tokenizer and an RNG), and the random-token workload.

:func:`fit_text` is the one length-fitting loop every workload uses: start from some token ids,
decode them to text, re-measure the text the way the server will count it, and correct — adding
ids when short, cutting ids when long — until the count is exact. The random workload feeds it
ids sampled from the tokenizer's candidates (no special tokens, decoded text longer than
2 characters, as llama-recipes' on-prem vLLM benchmark does). Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from servemark.client.openai import RequestSpec
from servemark.errors import ConfigError
from servemark.workload.base import WorkItem
from servemark.workload.lengths import LengthDist
from servemark.workload.tokenizer import Tokenizer

MAX_ROUNDS = 64
ATTEMPTS = 8

Measure = Callable[[str], int]
# extend(body, k) -> k more token ids to append to ``body`` (the ids fitted so far)
Extend = Callable[[list[int], int], list[int]]


class NoConvergence(RuntimeError):
    """Decode/encode kept disagreeing (pathological merges); retry from other ids."""


def measure_for(tok: Tokenizer, api: str, prefix: str = "") -> Measure:
    """How the server counts a prompt whose text is ``prefix + text``."""
    if api == "chat":
        def measure(text: str) -> int:
            return tok.count_chat([{"role": "user", "content": prefix + text}])
    else:
        def measure(text: str) -> int:
            return len(tok.encode(prefix + text))
    return measure


def fit_text(target: int, measure: Measure, tok: Tokenizer, extend: Extend, overhead: int) -> str:
    """Text whose ``measure`` is exactly ``target``; ``overhead`` is ``measure("")``."""
    if target <= overhead:
        raise ConfigError(
            f"input length {target} leaves no room for a prompt: the format alone takes "
            f"{overhead} tokens",
            f"use lengths of {overhead + 1} or more",
        )
    body = extend([], target - overhead)
    text = tok.decode(body)
    for _ in range(MAX_ROUNDS):
        diff = target - measure(text)
        if diff == 0:
            return text
        body = tok.encode_body(text)
        if diff > 0:
            body.extend(extend(body, diff))
        else:
            body = body[: max(len(body) + diff, 0)]
        text = tok.decode(body)
    raise NoConvergence(target)


def fit_with_retries(target: int, measure: Measure, tok: Tokenizer,
                     make_extend: Callable[[int], Extend], overhead: int) -> str:
    """:func:`fit_text`, restarting from other ids (``make_extend(attempt)``) if it cycles."""
    for attempt in range(ATTEMPTS):
        try:
            return fit_text(target, measure, tok, make_extend(attempt), overhead)
        except NoConvergence:
            continue
    raise ConfigError(
        f"could not build a prompt of exactly {target} tokens with {tok.name}",
        "try another length or --seed",
    )


def random_extend(candidates: list[int], rng: random.Random) -> Extend:
    def extend(body: list[int], k: int) -> list[int]:
        return [rng.choice(candidates) for _ in range(k)]
    return extend


def make_spec(request_id: int, api: str, text: str, input_len: int, output_len: int) -> RequestSpec:
    """A completions prompt, or one user message for the chat API."""
    if api == "chat":
        return RequestSpec(request_id, api, messages=({"role": "user", "content": text},),
                           input_len=input_len, output_len=output_len)
    return RequestSpec(request_id, api, prompt=text, input_len=input_len, output_len=output_len)


def exact_random_text(tok: Tokenizer, target: int, measure: Measure, rng: random.Random,
                      overhead: int | None = None) -> str:
    """Random-token text that ``measure`` counts as exactly ``target`` tokens."""
    extend = random_extend(tok.candidate_ids(), rng)
    return fit_with_retries(target, measure, tok, lambda _a: extend,
                            measure("") if overhead is None else overhead)


@dataclass(frozen=True)
class RandomWorkload:
    """Random-token prompts of exact lengths drawn from ``input_len`` (template counted for chat)."""

    input_len: LengthDist
    output_len: LengthDist
    api: str = "completions"
    name: str = "random"

    def build(self, tok: Tokenizer, n: int, rng: random.Random, first_id: int = 0) -> list[WorkItem]:
        measure = measure_for(tok, self.api)
        overhead = measure("")
        out: list[WorkItem] = []
        for i in range(n):
            length, olen = self.input_len.sample(rng), self.output_len.sample(rng)
            text = exact_random_text(tok, length, measure, rng, overhead)
            out.append(make_spec(first_id + i, self.api, text, length, olen))
        return out


def random_prompts(tok: Tokenizer, n: int, input_len: int, output_len: int, api: str,
                   rng: random.Random, first_id: int = 0) -> list[WorkItem]:
    """``n`` requests of exactly ``input_len`` prompt tokens (kept for library callers)."""
    fixed_in, fixed_out = LengthDist("fixed", input_len, input_len), LengthDist("fixed", output_len, output_len)
    return RandomWorkload(fixed_in, fixed_out, api).build(tok, n, rng, first_id)
