"""Multi-turn conversations (pure): every turn sends the whole history so far.

User turns are questions from our question set fitted to ``input_len`` tokens of text; the
assistant's earlier answers in the history are scripted text of exactly ``output_len`` tokens
(the length the server is asked to generate), so every turn's prompt length is known exactly in
advance and a saved workload replays identically. Turn k's prompt therefore grows by one user
message, one assistant message and their template tokens over turn k − 1.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from servemark.client.openai import RequestSpec
from servemark.workload.base import Conversation, WorkItem
from servemark.workload.chat import question_set, stacked_ids, stream_extend
from servemark.workload.lengths import LengthDist
from servemark.workload.synthetic import fit_with_retries, random_extend
from servemark.workload.tokenizer import Tokenizer, corpus_text


def body_text(tok: Tokenizer, texts: list[str], length: int, rng: random.Random,
              candidates: list[int]) -> str:
    """Text of exactly ``length`` tokens (no special tokens): ``texts`` shuffled and stacked."""
    order = texts[:]
    rng.shuffle(order)
    stream = stacked_ids(tok, order, length + 16)

    def measure(text: str) -> int:
        return len(tok.encode_body(text))

    return fit_with_retries(
        length, measure, tok,
        lambda attempt: stream_extend(stream) if attempt == 0 else random_extend(candidates, rng),
        0,
    )


@dataclass(frozen=True)
class MultiTurnWorkload:
    """``n`` conversations of ``turns`` turns; ``input_len`` is each user message's text length."""

    input_len: LengthDist
    output_len: LengthDist
    turns: int = 3
    name: str = "multiturn"
    api: str = "chat"

    def build(self, tok: Tokenizer, n: int, rng: random.Random, first_id: int = 0) -> list[WorkItem]:
        candidates = tok.candidate_ids()
        questions = list(question_set())
        paragraphs = [p.replace("\n", " ") for p in corpus_text().split("\n\n") if p.strip()]
        out: list[WorkItem] = []
        next_id = first_id
        for _ in range(n):
            cid = next_id
            history: list[dict[str, str]] = []
            turns: list[RequestSpec] = []
            for k in range(1, self.turns + 1):
                length, olen = self.input_len.sample(rng), self.output_len.sample(rng)
                history.append({"role": "user",
                                "content": body_text(tok, questions, length, rng, candidates)})
                turns.append(RequestSpec(next_id, "chat", messages=tuple(history),
                                         input_len=tok.count_chat(history), output_len=olen,
                                         conversation_id=cid, turn=k))
                next_id += 1
                if k < self.turns:
                    history.append({"role": "assistant",
                                    "content": body_text(tok, paragraphs, olen, rng, candidates)})
            out.append(Conversation(cid, tuple(turns)))
        return out
