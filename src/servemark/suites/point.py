"""What one measurement is (pure): the point of a matrix and the settings shared by a run.

A point's ``key`` identifies it in a sweep's journal, so a re-run skips what is done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["offline", "online"]


@dataclass(frozen=True, slots=True)
class Point:
    """One measurement: B prompts of exactly ``input_len`` tokens, ``output_len`` tokens each."""

    input_len: int
    output_len: int
    batch_size: int
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    max_model_len: int | None = None
    scenario: str = ""  # "FOM1" … for suites, empty for sweeps

    def key(self, mode: str, model: str) -> str:
        """Stable identity of the point within a sweep (what resume compares)."""
        mml = self.max_model_len if self.max_model_len is not None else "-"
        return (f"{mode}|{model}|{self.scenario or '-'}|tp{self.tensor_parallel}"
                f"|pp{self.pipeline_parallel}|b{self.batch_size}|in{self.input_len}"
                f"|out{self.output_len}|mml{mml}")

    def label(self) -> str:
        head = f"{self.scenario} " if self.scenario else ""
        return (f"{head}in={self.input_len} out={self.output_len} batch={self.batch_size} "
                f"tp={self.tensor_parallel}" + (f" pp={self.pipeline_parallel}"
                                                if self.pipeline_parallel != 1 else ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunSettings:
    """Everything shared by the points of one run (a throughput call, a sweep, a FOM suite).

    ``mode`` offline: ``model`` is what vllm.LLM loads; ``engine_args`` go to it unchanged
    (tensor/pipeline parallel sizes and max_model_len come from the point). ``mode`` online:
    ``base_url`` serves ``model`` (None = the only one served); TP/PP/dtype are labels only.
    """

    mode: Mode
    model: str | None
    base_url: str | None = None
    dtype: str | None = None
    engine_args: dict[str, Any] = field(default_factory=dict)
    num_iters_warmup: int = 1
    num_iters: int = 5
    seed: int = 0
    timeout_s: float | None = None
    tokenizer: str | None = None  # online: local tokenizer (default: the server's /tokenize)
    api_key: str | None = field(default=None, repr=False)  # online; never recorded
    hardware: str | None = None  # override detection (e.g. a remote server's GPUs)
    num_hardware: int | None = None
    model_config: str | None = None  # where N layers and d hidden are read for the FLOP form
    env: dict[str, str] = field(default_factory=dict)  # extra environment for offline workers

    def public_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("api_key")
        return data
