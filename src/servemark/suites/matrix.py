"""Sweep matrices (pure): input × output lengths (or input = output) × batch × TP → points.

The defaults reproduce the matrix HPC benchmark papers use: TP {1, 2, 4} × batch
{1, 16, 32, 64} × input = output {128, 256, 512, 1024, 2048}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servemark.errors import ConfigError
from servemark.suites.point import Point, RunSettings

DEFAULT_LENGTHS = [128, 256, 512, 1024, 2048]
DEFAULT_BATCH_SIZES = [1, 16, 32, 64]
DEFAULT_TP_SIZES = [1, 2, 4]


class SweepSpec(BaseModel):
    """A sweep, from flags or a YAML file (same keys). Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["offline", "online"] = "offline"
    model: str | None = None
    base_url: str | None = None
    input_lens: list[int] = Field(default_factory=lambda: list(DEFAULT_LENGTHS))
    output_lens: list[int] | None = None  # None: output = input, point by point
    batch_sizes: list[int] = Field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    tp_sizes: list[int] | None = None  # None: {1, 2, 4} offline, [1] online
    pp_size: int = Field(1, ge=1)
    max_model_len: int | None = Field(None, ge=1)
    dtype: str | None = None
    engine_args: dict[str, Any] = Field(default_factory=dict)
    num_iters_warmup: int = Field(1, ge=0)
    num_iters: int = Field(5, ge=1)
    seed: int = 0
    point_timeout_s: float | None = Field(None, gt=0)
    tokenizer: str | None = None
    hardware: str | None = None
    num_hardware: int | None = Field(None, ge=1)
    csv: Path = Path("sweep.csv")
    csv_format: str = "servemark"
    retry_failed: bool = False

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        for name in ("input_lens", "output_lens", "batch_sizes", "tp_sizes"):
            values = getattr(self, name)
            if values is not None and (not values or min(values) < 1):
                raise ValueError(f"{name} must be a non-empty list of integers ≥ 1")
        if self.mode == "offline" and not self.model:
            raise ValueError("an offline sweep needs model (what vllm.LLM loads)")
        if self.mode == "online":
            if not self.base_url:
                raise ValueError("an online sweep needs base_url")
            if self.tp_sizes is not None and len(self.tp_sizes) > 1:
                raise ValueError("an online sweep measures one running server: give one TP "
                                 "size (the server's), or sweep TP offline")
        return self

    @property
    def effective_tp_sizes(self) -> list[int]:
        if self.tp_sizes is not None:
            return list(self.tp_sizes)
        return list(DEFAULT_TP_SIZES) if self.mode == "offline" else [1]

    def points(self) -> list[Point]:
        return expand(self.input_lens, self.output_lens, self.batch_sizes,
                      self.effective_tp_sizes, self.pp_size, self.max_model_len)

    def settings(self, api_key: str | None = None) -> RunSettings:
        return RunSettings(
            mode=self.mode, model=self.model, base_url=self.base_url, dtype=self.dtype,
            engine_args=dict(self.engine_args), num_iters_warmup=self.num_iters_warmup,
            num_iters=self.num_iters, seed=self.seed, timeout_s=self.point_timeout_s,
            tokenizer=self.tokenizer, api_key=api_key, hardware=self.hardware,
            num_hardware=self.num_hardware,
        )


def expand(input_lens: list[int], output_lens: list[int] | None, batch_sizes: list[int],
           tp_sizes: list[int], pp_size: int = 1, max_model_len: int | None = None) -> list[Point]:
    """Points in run order: TP outermost, then lengths, then batch size (duplicates dropped)."""
    pairs = ([(i, i) for i in input_lens] if output_lens is None
             else [(i, o) for i in input_lens for o in output_lens])
    seen: set[Point] = set()
    out: list[Point] = []
    for tp in tp_sizes:
        for i, o in pairs:
            for b in batch_sizes:
                p = Point(i, o, b, tp, pp_size, max_model_len)
                if p not in seen:
                    seen.add(p)
                    out.append(p)
    return out


def make_sweep_spec(data: dict[str, Any]) -> SweepSpec:
    """Build a SweepSpec, turning pydantic's errors into one ConfigError line."""
    try:
        return SweepSpec(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        error = ConfigError(f"invalid sweep {loc}: {msg}" if loc else f"invalid sweep: {msg}",
                            "see `servemark sweep --help`")
        error.key_path = tuple(str(p) for p in err["loc"])
        raise error from exc
