"""The experiment spec (``servemark run experiment.yaml``): deploy or attach, then benchmark.

The ``bench`` section takes exactly the flags of ``servemark bench`` as keys (dashes become
underscores: ``--num-requests`` → ``num_requests``) and is validated by :class:`BenchConfig`
itself, so the two can never drift apart. Errors name the key and, where there is a choice,
the allowed values; unknown keys are errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from servemark.errors import ConfigError
from servemark.spec import BenchConfig
from servemark.specfile import KeyLines, at_line, read_yaml

PLACEHOLDER_URL = "http://deployment.invalid"
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")


class DeployConfig(BaseModel):
    """One or several vLLM servers of one model on this node (the flags of ``servemark serve``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="model directory or Hugging Face name")
    served_model_name: str | None = None
    vllm_args: list[str] = Field(default_factory=list, description="any vLLM flags, passed through")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment of the servers")
    replicas: int | Literal["max"] = 1
    device: Literal["auto", "gpu", "cpu"] = "auto"
    cores_per_replica: int | None = Field(None, ge=1)
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535)
    ready_timeout: float = Field(600.0, gt=0)
    python: str | None = Field(None, description="Python that has vLLM (default: this one)")

    @field_validator("vllm_args", "env", mode="before")
    @classmethod
    def _scalars_as_text(cls, v: Any) -> Any:
        """YAML reads ``- 2048`` as a number; flags and env values are text."""
        if isinstance(v, list):
            return [str(x) if isinstance(x, int | float) and not isinstance(x, bool) else x for x in v]
        if isinstance(v, dict):
            return {k: str(x) if isinstance(x, int | float) and not isinstance(x, bool) else x
                    for k, x in v.items()}
        return v

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, v: Any) -> Any:
        if v == "max":
            return v
        try:
            n = int(v)
        except (TypeError, ValueError):
            n = 0
        if n < 1 or isinstance(v, bool) or (isinstance(v, float) and v != n):
            raise ValueError(f"must be a positive integer or 'max', got {v!r}")
        return n

    def public_dict(self) -> dict[str, Any]:
        """As recorded in results: values of secret-looking environment variables hidden."""
        from servemark.store.provenance import redact_argv

        data = self.model_dump(mode="json")
        data["env"] = {k: ("***" if any(w in k.upper() for w in SECRET_WORDS) else v)
                       for k, v in self.env.items()}
        data["vllm_args"] = redact_argv(self.vllm_args)
        return data


class ExperimentSpec(BaseModel):
    """A whole experiment. ``bench`` holds ``servemark bench`` flags (validated on load)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="names the run directory")
    deploy: DeployConfig | None = None
    bench: dict[str, Any] = Field(default_factory=dict)

    def bench_config(self, base_url: str | list[str] | None = None, **overrides: Any) -> BenchConfig:
        """The BenchConfig of this experiment, pointed at ``base_url`` when we deployed."""
        data = bench_fields(self.bench)
        if base_url is not None:
            data["base_url"] = base_url
        data.update(overrides)
        try:
            return BenchConfig(**data)
        except ValidationError as exc:
            error = ConfigError(describe_error(exc, "bench", BenchConfig), SPEC_HINT)
            error.key_path = ("bench", *error_path(exc, BenchConfig))
            raise error from None


SPEC_HINT = "see `servemark init` for a commented example"


def bench_fields(section: dict[str, Any]) -> dict[str, Any]:
    """Spec keys (the bench flag names) → BenchConfig fields (``duration`` → ``duration_s``)."""
    fields = BenchConfig.model_fields
    out: dict[str, Any] = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name not in fields and f"{name}_s" in fields:
            name = f"{name}_s"
        out[name] = value
    return out


def spec_key(field_name: str) -> str:
    """The spec key (= flag name) of a BenchConfig field."""
    return field_name.removesuffix("_s") if field_name.endswith("_s") else field_name


def error_path(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """The key path of the first problem, as the spec spells it."""
    loc = [str(p) for p in exc.errors()[0]["loc"]]
    if loc and model is BenchConfig:
        loc[0] = spec_key(loc[0])
    # union types report per-branch locations (e.g. "int", "literal['max']"): keep the key
    return [p for p in loc if not (p in ("int", "str", "float") or p.startswith(("literal[", "list[")))]


def describe_error(exc: ValidationError, section: str | None, model: type[BaseModel]) -> str:
    """One line for the first problem: the key, what is wrong, the allowed keys or values."""
    err = exc.errors()[0]
    loc = error_path(exc, model)
    key = ".".join(([section] if section else []) + loc)
    if err["type"] == "extra_forbidden":
        owner = model
        if model is ExperimentSpec and len(loc) > 1 and loc[0] == "deploy":
            owner = DeployConfig
        allowed = sorted(spec_key(f) if owner is BenchConfig else f for f in owner.model_fields)
        return f"unknown key {key!r}; allowed keys: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"missing required key {key!r}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"invalid {key}: {msg}" if key else msg


def load_spec(path: Path) -> ExperimentSpec:
    """Read and validate a YAML spec; every problem is one ConfigError naming the file, the
    line and the key."""
    data, lines = read_yaml(path, "create one with `servemark init`")
    return parse_spec(data or {}, str(path), lines)


def parse_spec(data: Any, source: str = "spec", lines: KeyLines | None = None) -> ExperimentSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of keys (name, deploy, bench)", SPEC_HINT)
    try:
        spec = ExperimentSpec(**data)
    except ValidationError as exc:
        where = at_line(source, lines, error_path(exc, ExperimentSpec))
        raise ConfigError(f"{where}: {describe_error(exc, None, ExperimentSpec)}", SPEC_HINT) from None
    has_url = "base_url" in spec.bench
    if spec.deploy is None and not has_url:
        raise ConfigError(f"{source}: nothing to benchmark",
                          "add a 'deploy' section, or 'bench.base_url' to attach to running servers")
    if spec.deploy is not None and has_url:
        where = at_line(source, lines, ["bench", "base_url"])
        raise ConfigError(f"{where}: both 'deploy' and 'bench.base_url' are given",
                          "deploy servers or attach to running ones, not both")
    try:  # validate the bench section now, not after a ten-minute deployment
        spec.bench_config(None if has_url else PLACEHOLDER_URL)
    except ConfigError as exc:
        where = at_line(source, lines, exc.key_path or ("bench",))
        raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    return spec


EXAMPLE_SPEC = """\
# servemark experiment: deploy (or attach) -> wait until ready -> load points -> teardown.
# Run it with:  servemark run {filename}
# Every key of 'bench' is a flag of `servemark bench` (dashes become underscores).

name: {name}                # names the run directory under results_root

deploy:                     # start vLLM servers here; remove this section to attach instead
  model: {model}            # a model directory or a Hugging Face name (see `servemark download`)
  served_model_name: {served}
  replicas: 1               # an integer, or max: as many as the node's devices allow
  device: auto              # auto | gpu | cpu (GPUs: CUDA_VISIBLE_DEVICES; CPU: core binding)
  # cores_per_replica: 8    # CPU only: cores per replica (default: an even share)
  ready_timeout: 900        # seconds until every replica must serve
  vllm_args:                # any vLLM flags, passed through unchanged
{vllm_args}
  env: {{}}                   # extra environment, e.g. {{VLLM_CPU_KVCACHE_SPACE: "4"}}

bench:
  # base_url: [http://node1:8000, http://node2:8000]   # attach instead of deploy
  # lb_policy: round-robin   # round-robin | least-outstanding (several endpoints)
  api: completions          # completions | chat
  concurrency: [1, 4]       # closed loop: one load point per value (or request_rate: [2, 4])
  num_requests: {num_requests}          # measured requests per load point
  warmup: 2                 # warm-up requests per load point (not counted)
  input_len: {input_len}            # prompt tokens (exact)
  output_len: {output_len}           # output tokens (exact with ignore_eos)
  seed: 0
"""


def example_spec(filename: str = "experiment.yaml", model: str = "/path/to/model",
                 served: str = "my-model", name: str = "example", *, cpu: bool = False) -> str:
    """The commented example ``servemark init`` writes (CPU-friendly flags with ``cpu``)."""
    args = ["--max-model-len", "2048"]
    if cpu:
        args += ["--enforce-eager", "--dtype", "bfloat16"]
    lines = "\n".join(f'    - "{a}"' for a in args)
    return EXAMPLE_SPEC.format(filename=filename, model=model, served=served, name=name,
                               vllm_args=lines, num_requests=16 if cpu else 200,
                               input_len=64 if cpu else 512, output_len=32 if cpu else 256)
