"""Pick and build the configured workload; summarize one without sending anything."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from servemark.metrics.stats import Distribution, describe
from servemark.spec import WorkloadConfig
from servemark.workload.base import Conversation, WorkItem, Workload, requests_of
from servemark.workload.chat import ChatWorkload
from servemark.workload.dataset import DatasetWorkload
from servemark.workload.files import load_dataset, resolve_lengths
from servemark.workload.lengths import parse_length
from servemark.workload.multiturn import MultiTurnWorkload
from servemark.workload.prefix import PrefixWorkload
from servemark.workload.synthetic import RandomWorkload
from servemark.workload.tokenizer import Tokenizer


def make_workload(cfg: WorkloadConfig) -> Workload:
    """The workload ``cfg`` selects, with its files (dataset, length lists) read."""
    inp = resolve_lengths(parse_length(cfg.input_len, "--input-len"), "--input-len")
    outp = resolve_lengths(parse_length(cfg.output_len, "--output-len"), "--output-len")
    if cfg.workload == "chat":
        return ChatWorkload(inp, outp)
    if cfg.workload == "multiturn":
        return MultiTurnWorkload(inp, outp, cfg.turns)
    if cfg.workload == "prefix":
        assert cfg.prefix_len is not None  # the config validator guarantees it
        return PrefixWorkload(inp, outp, cfg.prefix_len, cfg.api)
    if cfg.workload == "dataset":
        assert cfg.dataset is not None
        rows = load_dataset(cfg.dataset, cfg.dataset_format)
        return DatasetWorkload(rows, outp, cfg.api, cfg.min_input_len, cfg.max_input_len,
                               source=str(cfg.dataset))
    return RandomWorkload(inp, outp, cfg.api)


def point_seed(seed: int, point_index: int) -> int:
    """Each load point gets its own prompts (no cross-point prefix-cache hits), reproducibly."""
    return seed * 1_000_003 + point_index


def build_items(workload: Workload, tok: Tokenizer, n: int, seed: int, point_index: int = 0,
                first_id: int = 0) -> list[WorkItem]:
    return workload.build(tok, n, random.Random(point_seed(seed, point_index)), first_id)


@dataclass(frozen=True)
class WorkloadPreview:
    """Token-length statistics of a built workload (nothing sent)."""

    workload: str
    items: int
    requests: int
    conversations: int
    input_len: Distribution
    output_len: Distribution
    max_total_len: int


def preview(name: str, items: Sequence[WorkItem]) -> WorkloadPreview:
    specs = [s for item in items for s in requests_of(item)]
    ins = [s.input_len for s in specs if s.input_len is not None]
    outs = [s.output_len for s in specs if s.output_len is not None]
    return WorkloadPreview(
        workload=name,
        items=len(items),
        requests=len(specs),
        conversations=sum(isinstance(i, Conversation) for i in items),
        input_len=describe(ins),
        output_len=describe(outs),
        max_total_len=max(((s.input_len or 0) + (s.output_len or 0) for s in specs), default=0),
    )


def workload_items(cfg: WorkloadConfig, tok: Tokenizer, n: int) -> list[WorkItem]:
    """Exactly the items ``servemark bench`` builds for its first load point (same seed)."""
    return build_items(make_workload(cfg), tok, n, cfg.seed, 0, 0)
