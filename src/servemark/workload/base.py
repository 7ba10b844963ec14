"""What every workload produces: work items (one request, or a conversation of sequential turns).

A workload is pure given a tokenizer and an RNG: ``build`` returns the same items for the same
seed. The runner treats a :class:`Conversation` as one unit of work whose turns are sent one
after another, while different conversations run concurrently.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from servemark.client.openai import RequestSpec
from servemark.workload.tokenizer import Tokenizer


@dataclass(frozen=True, slots=True)
class Conversation:
    """Turns of one conversation; turn k's messages hold the whole history before it."""

    conversation_id: int
    turns: tuple[RequestSpec, ...]


WorkItem = RequestSpec | Conversation


class Workload(Protocol):
    """Builds ``n`` work items (requests, or conversations for multi-turn)."""

    @property
    def name(self) -> str: ...

    def build(self, tok: Tokenizer, n: int, rng: random.Random, first_id: int = 0) -> list[WorkItem]:
        ...


def requests_of(item: WorkItem) -> tuple[RequestSpec, ...]:
    """The requests a work item sends, in order."""
    return item.turns if isinstance(item, Conversation) else (item,)


def count_requests(items: Sequence[WorkItem]) -> int:
    return sum(len(requests_of(i)) for i in items)


def renumber(item: WorkItem, first_id: int) -> WorkItem:
    """A copy with request ids from ``first_id`` on (reused pools keep ids unique).

    A conversation's id is the request id of its first turn, so it is unique within a run too.
    """
    if isinstance(item, Conversation):
        turns = tuple(replace(t, request_id=first_id + k, conversation_id=first_id)
                      for k, t in enumerate(item.turns))
        return Conversation(first_id, turns)
    return replace(item, request_id=first_id)


def cycle_pool(pool: Sequence[WorkItem], first_id: int, stride: int = 1) -> Iterator[WorkItem]:
    """Reuse a pool endlessly (duration-bounded runs), renumbering every item so request ids
    never repeat; ids advance by ``stride`` per request, so worker processes that interleave
    their ids (stride = number of workers) never collide either."""
    if not pool:
        return
    next_id = first_id
    for k in itertools.count():
        item = renumber(pool[k % len(pool)], next_id)
        yield item
        next_id += stride * len(requests_of(item))
