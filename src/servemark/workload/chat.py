"""Chat prompts from our own question set, concatenated and replicated to an exact length (pure).

Sites test long chat inputs (2k, 4k tokens) by stacking ordinary questions into one user
message; the length is counted with the model's chat template applied, exactly like the server
counts ``prompt_tokens`` for ``/v1/chat/completions``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib import resources

from servemark.workload.base import WorkItem
from servemark.workload.lengths import LengthDist
from servemark.workload.synthetic import (
    Extend,
    fit_with_retries,
    make_spec,
    measure_for,
    random_extend,
)
from servemark.workload.tokenizer import Tokenizer


def question_set() -> tuple[str, ...]:
    """The questions shipped in the package (``data/questions.txt``; ``#`` lines are comments)."""
    text = resources.files("servemark.data").joinpath("questions.txt").read_text(encoding="utf-8")
    return tuple(q.strip() for q in text.splitlines() if q.strip() and not q.startswith("#"))


def stream_extend(ids: list[int]) -> Extend:
    """Continue with the ids of a fixed text, from where the fitted body ends (cycling)."""
    def extend(body: list[int], k: int) -> list[int]:
        start = len(body)
        return [ids[(start + j) % len(ids)] for j in range(k)]
    return extend


def stacked_ids(tok: Tokenizer, texts: list[str], min_tokens: int, sep: str = "\n") -> list[int]:
    """Token ids of ``texts`` joined by ``sep``, replicated until there are ``min_tokens``."""
    one_round = tok.encode_body(sep.join(texts))
    reps = max(1, -(-min_tokens // max(len(one_round), 1)))
    return tok.encode_body(sep.join(texts * reps)) if reps > 1 else one_round


@dataclass(frozen=True)
class ChatWorkload:
    """Questions stacked into one user message of exactly ``input_len`` tokens (template counted)."""

    input_len: LengthDist
    output_len: LengthDist
    questions: tuple[str, ...] = ()
    name: str = "chat"
    api: str = "chat"

    def build(self, tok: Tokenizer, n: int, rng: random.Random, first_id: int = 0) -> list[WorkItem]:
        questions = list(self.questions or question_set())
        measure = measure_for(tok, "chat")
        overhead = measure("")
        candidates = tok.candidate_ids()
        out: list[WorkItem] = []
        for i in range(n):
            length, olen = self.input_len.sample(rng), self.output_len.sample(rng)
            order = questions[:]
            rng.shuffle(order)
            ids = stacked_ids(tok, order, length + 16)
            extend = stream_extend(ids)
            # if the cut keeps re-merging differently, later attempts use random tokens instead
            def pick(attempt: int, first: Extend = extend) -> Extend:
                return first if attempt == 0 else random_extend(candidates, rng)

            text = fit_with_retries(length, measure, tok, pick, overhead)
            out.append(make_spec(first_id + i, "chat", text, length, olen))
        return out
