"""Benchmark configuration (pydantic): the one place defaults live, validated with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from servemark.errors import ConfigError
from servemark.load.schedule import LoadPoint
from servemark.workload.lengths import parse_length

DEFAULT_NUM_REQUESTS = 100
WORKLOADS = ("random", "chat", "dataset", "multiturn", "prefix")
CHAT_ONLY_WORKLOADS = ("chat", "multiturn")


class WorkloadConfig(BaseModel):
    """What each request sends (``servemark workload`` and the workload part of ``bench``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: Literal["completions", "chat"] = "completions"  # chat and multiturn default to chat
    workload: Literal["random", "chat", "dataset", "multiturn", "prefix"] = "random"
    seed: int = 0
    input_len: int | str = Field(128, description="tokens: 128, uniform:64:256, normal:512:64, file:lens.txt")
    output_len: int | str = Field(128, description="tokens, same forms as input_len")
    tokenizer: str | None = None
    verify_tokenizer: bool = True
    dataset: Path | None = None
    dataset_format: Literal["auto", "jsonl", "sharegpt", "csv"] = "auto"
    min_input_len: int | None = Field(None, ge=1)
    max_input_len: int | None = Field(None, ge=1)
    turns: int = Field(3, ge=1, description="multiturn: turns per conversation")
    prefix_len: int | None = Field(None, ge=1, description="prefix: tokens of the shared prefix")

    @model_validator(mode="before")
    @classmethod
    def _default_api(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("api") is None:
            data = {**data, "api": "chat" if data.get("workload") in CHAT_ONLY_WORKLOADS else "completions"}
        return data

    @field_validator("input_len", "output_len", mode="before")
    @classmethod
    def _length(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int | str) or isinstance(value, bool):
            raise ValueError("expected a length such as 128 or uniform:64:256")
        try:
            parse_length(value, "--" + info.field_name.replace("_", "-"))
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _check_workload(self) -> WorkloadConfig:
        w = self.workload
        if w in CHAT_ONLY_WORKLOADS and self.api != "chat":
            raise ValueError(f"the {w} workload sends chat messages; use api chat")
        if (w == "dataset") != (self.dataset is not None):
            raise ValueError("the dataset workload needs a dataset file" if w == "dataset"
                             else "a dataset file needs workload dataset")
        if w != "dataset" and (self.min_input_len or self.max_input_len):
            raise ValueError("min_input_len/max_input_len filter dataset rows; use workload dataset")
        if (w == "prefix") != (self.prefix_len is not None):
            raise ValueError("the prefix workload needs prefix_len" if w == "prefix"
                             else "prefix_len applies to workload prefix")
        return self


class BenchConfig(WorkloadConfig):
    """Everything ``servemark bench`` needs. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | list[str] = Field(
        description="server root, e.g. http://localhost:8000; several spread the load")
    lb_policy: Literal["round-robin", "least-outstanding"] = "round-robin"
    model: str | None = Field(None, description="served model name; default: the only one served")
    stream: bool = True

    concurrency: list[int] | None = None
    request_rate: list[float] | None = None
    arrival: Literal["poisson", "constant"] = "poisson"
    max_concurrency: int | None = Field(None, ge=1)
    num_requests: int | None = Field(None, ge=1)
    duration_s: float | None = Field(None, gt=0)
    warmup: int = Field(0, ge=0)

    ignore_eos: bool = True
    temperature: float | None = Field(0.0, ge=0)
    extra_body: dict[str, Any] | None = None

    num_gpus: int | None = Field(None, ge=1, description="GPUs behind the endpoint, for per-GPU rates")
    threshold_tps: float | None = Field(
        None, gt=0, description="count requests whose output tokens / e2e is below this (slow requests)")

    output_dir: Path | None = None
    results_root: Path = Path("results")
    connect_timeout_s: float = Field(30.0, gt=0)
    read_timeout_s: float = Field(600.0, gt=0)
    request_timeout_s: float | None = Field(None, gt=0)
    first_token_timeout_s: float | None = Field(None, gt=0, description="request sent → first token")
    retries: int = Field(0, ge=0, le=100, description="re-sends of a 429/503 or a connection error before any byte")
    retry_max_wait_s: float = Field(30.0, ge=0, description="longest wait before a retry (Retry-After is capped to it)")
    grace_period_s: float = Field(30.0, ge=0)
    api_key: SecretStr | None = None
    http_client: Literal["fast", "aiohttp"] = "fast"
    workers: int = Field(1, ge=1, le=256)
    ray_address: str | None = Field(
        None, description="run the workers as Ray actors on this Ray cluster (GCS HOST:PORT, or auto)")
    server_metrics: bool = Field(True, description="sample the server's /metrics during each load point")
    metrics_interval_s: float = Field(1.0, gt=0)
    safety_check: Literal["local", "judge", "azure"] | None = None
    safety_on: tuple[Literal["prompt", "output"], ...] = ("output",)
    safety_rules: Path | None = None
    judge_url: str | None = None
    judge_model: str | None = None

    @field_validator("base_url")
    @classmethod
    def _one_or_many(cls, v: str | list[str]) -> str | list[str]:
        urls = [v] if isinstance(v, str) else v
        if not urls:
            raise ValueError("give at least one base_url")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"base_url {url!r} must start with http:// or https://")
        if len(set(urls)) != len(urls):
            raise ValueError("the same base_url is given twice")
        return urls[0] if len(urls) == 1 else urls

    @property
    def base_urls(self) -> list[str]:
        """Every endpoint, in the order given (one for a single server)."""
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)

    @model_validator(mode="after")
    def _check(self) -> BenchConfig:
        if self.concurrency is not None and self.request_rate is not None:
            raise ValueError("give either concurrency (closed loop) or request_rate (open loop), not both")
        if self.concurrency is not None and (not self.concurrency or min(self.concurrency) < 1):
            raise ValueError("concurrency values must be integers ≥ 1")
        if self.request_rate is not None and (not self.request_rate or min(self.request_rate) <= 0):
            raise ValueError("request_rate values must be > 0 requests/s")
        if self.safety_check is not None and (self.workers > 1 or self.ray_address):
            raise ValueError("safety checks read outputs in the main process; use workers 1 with safety")
        if self.max_concurrency is not None and self.request_rate is None:
            raise ValueError("max_concurrency applies to request_rate runs; for closed loop use concurrency")
        return self

    @property
    def effective_num_requests(self) -> int | None:
        """Requests per load point: as given, or the default when no duration bounds the run."""
        if self.num_requests is None and self.duration_s is None:
            return DEFAULT_NUM_REQUESTS
        return self.num_requests

    def load_points(self) -> list[LoadPoint]:
        if self.request_rate is not None:
            return [LoadPoint(request_rate=r, arrival=self.arrival, max_concurrency=self.max_concurrency)
                    for r in self.request_rate]
        return [LoadPoint(concurrency=c) for c in (self.concurrency or [1])]

    def public_dict(self) -> dict[str, Any]:
        """The config as recorded in results: secrets dropped."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        data["api_key_set"] = self.api_key is not None
        return data


def make_config(**kwargs: Any) -> BenchConfig:
    """Build a BenchConfig, turning pydantic's errors into one ConfigError line."""
    return _validated(BenchConfig, kwargs, "servemark bench --help")


def make_workload_config(**kwargs: Any) -> WorkloadConfig:
    return _validated(WorkloadConfig, kwargs, "servemark workload preview --help")


_C = TypeVar("_C", bound=BaseModel)


def _validated(cls: type[_C], kwargs: dict[str, Any], help_cmd: str) -> _C:
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid {loc}: {msg}" if err["loc"] else msg,
                          f"see `{help_cmd}`") from exc
