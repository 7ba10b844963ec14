"""The batch-job spec (pydantic): one vLLM deployment on a SLURM or PBS allocation plus an optional
benchmark step. Flat server/topology fields, nested scheduler, environment, Ray and bench sections,
so the whole model can later sit under the experiment spec's ``deploy`` key unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from servemark.errors import ConfigError
from servemark.specfile import KeyLines, at_line, read_yaml
from servemark.store.provenance import SECRET_ENV

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|PRIVATE_KEY", re.I)
_DIRECTIVE = re.compile(r"^[^\s'\"`$\\;|&<>]+$")  # one shell-safe word for #SBATCH/#PBS lines
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEM = re.compile(r"^\d+[KMGT]?B?$", re.I)
# flags the job script sets itself on `servemark bench` (the api key comes from OPENAI_API_KEY)
_RESERVED_BENCH = ("--base-url", "--output-dir", "--results-root", "--api-key", "--model")


def time_to_seconds(text: str) -> int:
    """SLURM time formats (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) → seconds."""
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"time {text!r} is not MM, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = m.groups()
    parts = [int(a)] + [int(x) for x in (b, c) if x is not None]
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, mi, s = (parts + [0, 0])[:3]
        return int(days) * 86400 + h * 3600 + mi * 60 + s
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def hms(seconds: int) -> str:
    """Seconds → ``HH:MM:SS`` (PBS walltime; hours may exceed 24)."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class SchedulerSpec(BaseModel):
    """Batch-system options; each maps to one #SBATCH or #PBS directive when set."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="SLURM partition")
    queue: str | None = Field(None, description="PBS queue (defaults to partition)")
    account: str | None = Field(None, description="SLURM account / PBS project (-A)")
    time: str = Field("01:00:00", description="time limit: MM, HH:MM:SS or D-HH:MM:SS")
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = Field(None, description="memory per node, e.g. 500G or 0 (all)")
    exclusive: bool = False
    reservation: str | None = None
    constraint: str | None = None
    qos: str | None = None
    filesystems: str | None = Field(None, description="PBS -l filesystems=..., e.g. home:eagle")
    place: str = Field("scatter", description="PBS -l place=...")
    select_extra: str | None = Field(None, description="appended to PBS select, e.g. system=polaris")
    extra_directives: list[str] = Field(default_factory=list,
                                        description="raw option words, e.g. --mail-type=END")

    @field_validator("partition", "queue", "account", "reservation", "constraint", "qos",
                     "filesystems", "place", "select_extra", "mem", "time")
    @classmethod
    def _one_word(cls, v: str | None) -> str | None:
        if v is not None and not _DIRECTIVE.match(v):
            raise ValueError(f"{v!r} must be one word without spaces or shell characters")
        return v

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        if time_to_seconds(v) <= 0:
            raise ValueError("time must be positive")
        return v

    @field_validator("mem")
    @classmethod
    def _mem(cls, v: str | None) -> str | None:
        if v is not None and not _MEM.match(v):
            raise ValueError(f"mem {v!r} is not like 500G, 64000M or 0")
        return v

    @field_validator("extra_directives")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        for d in v:
            if "\n" in d or not d.strip():
                raise ValueError(f"extra directive {d!r} must be one non-empty line")
        return v


class EnvSpec(BaseModel):
    """What runs before anything else on every node: activation lines and plain variables."""

    model_config = ConfigDict(extra="forbid")

    setup: list[str] = Field(default_factory=list,
                             description="shell lines: module load, conda activate, source venv")
    vars: dict[str, str] = Field(default_factory=dict, description="exported, e.g. HF_HOME")
    pass_env: list[str] = Field(default_factory=lambda: ["HF_TOKEN"],
                                description="secrets passed from the submit environment by name")

    @field_validator("vars")
    @classmethod
    def _vars(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if name in SECRET_ENV or _SECRETISH.search(name):
                raise ValueError(
                    f"{name} looks like a secret and would be written into the job script; "
                    f"export it before submitting and list it under environment.pass_env")
        return v

    @field_validator("pass_env")
    @classmethod
    def _pass(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return v

    @field_validator("setup")
    @classmethod
    def _setup(cls, v: list[str]) -> list[str]:
        for line in v:
            if "\n" in line:
                raise ValueError("each setup entry must be one line")
        return v


class RaySpec(BaseModel):
    """Ray for replicas that span nodes: where to find the node IP and how long to wait."""

    model_config = ConfigDict(extra="forbid")

    network_interface: str | None = Field(
        None, description="take node IPs from this interface (e.g. hsn0, ib0); default: first address")
    hostname_suffix: str | None = Field(
        None, description="take node IPs from the short host name plus this suffix, e.g. "
        ".hsn.cm.aurora.alcf.anl.gov (the high-speed network's host names)")
    wait_timeout_s: float = Field(600.0, gt=0, description="for all nodes and GPUs to join")
    num_cpus: int | None = Field(None, ge=1, description="CPUs Ray may use per node")
    num_gpus: int | None = Field(
        None, ge=0, description="GPUs each Ray node advertises (default gpus_per_node)")

    @field_validator("network_interface")
    @classmethod
    def _iface(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[A-Za-z0-9_.:-]+$", v):
            raise ValueError(f"network_interface {v!r} is not an interface name")
        return v

    @field_validator("hostname_suffix")
    @classmethod
    def _suffix(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[.-][A-Za-z0-9.-]*[A-Za-z0-9]$", v):
            raise ValueError(f"hostname_suffix {v!r} must look like .hsn.cm.example.org")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> RaySpec:
        if self.network_interface and self.hostname_suffix:
            raise ValueError("set network_interface or hostname_suffix, not both: "
                             "each names where node IPs come from")
        return self


# keys of an experiment spec's bench section the job sets itself (endpoints, where results go,
# the served model) and so leaves out
_JOB_OWNED_KEYS = ("base_url", "output_dir", "results_root", "model")


def experiment_bench_args(path: Path) -> dict[str, Any]:
    """The ``bench`` section of an experiment spec (``servemark run`` file) as bench options, so a
    batch job runs the same load points against its own servers. Its ``deploy`` section is not
    used: the cluster spec deploys."""
    from servemark.experiment import load_spec

    exp = load_spec(path)  # validated as `servemark run` would
    out: dict[str, Any] = {}
    for key, value in exp.bench.items():
        name = key.replace("-", "_")
        if name == "api_key":
            raise ValueError(f"{path} sets bench.api_key, which would be written into the job "
                             "script; export OPENAI_API_KEY before submitting instead")
        if name in _JOB_OWNED_KEYS:
            continue
        out[name] = json.dumps(value) if isinstance(value, dict) else value
    return out


class BenchStep(BaseModel):
    """The benchmark that runs once every replica answers ``/health``."""

    model_config = ConfigDict(extra="forbid")

    args: list[str] | dict[str, Any] = Field(
        default_factory=list, description="`servemark bench` arguments, as a list or an option dict")
    experiment: Path | None = Field(
        None, description="an experiment spec whose bench section (its load points) runs instead of args")
    health_timeout_s: float = Field(
        1800.0, gt=0, description="how long the step waits for every /health (default: ready_timeout_s)")

    def argv(self) -> list[str]:
        """The arguments as a flat list: dict keys become --long-options (True → flag, False → --no-)."""
        if isinstance(self.args, list):
            return [str(a) for a in self.args]
        out: list[str] = []
        for key, value in self.args.items():
            flag = "--" + key.replace("_", "-").lstrip("-")
            if value is True:
                out.append(flag)
            elif value is False:
                out.append("--no-" + flag[2:])
            elif value is None:
                continue
            elif isinstance(value, list | tuple):
                out += [flag, ",".join(str(x) for x in value)]
            else:
                out += [flag, str(value)]
        return out

    @model_validator(mode="after")
    def _reserved(self) -> BenchStep:
        if self.experiment is not None:
            if self.args:
                raise ValueError("give bench.args or bench.experiment, not both")
            from servemark.errors import ServemarkError

            try:
                self.args = experiment_bench_args(self.experiment)
            except ServemarkError as exc:  # the experiment file's own one-line reason
                raise ValueError(f"bench.experiment: {exc.one_line()}") from None
        for arg in self.argv():
            if arg.split("=", 1)[0] in _RESERVED_BENCH:
                raise ValueError(f"bench.args must not set {arg.split('=', 1)[0]}: the job script "
                                 "sets the endpoint, model and run directory itself")
        return self


class ClusterSpec(BaseModel):
    """One deployment as a batch job. ``JobSpec`` is the same model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("servemark", description="job name")
    model: str = Field(description="model path or hub name, as vLLM takes it")
    served_model_name: str | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0, description="0 for CPU-only nodes")
    nodes_per_replica: int | None = Field(
        None, ge=1, description="default: TP×PP / gpus_per_node (1 on CPU nodes)")
    replicas: int = Field(1, ge=1)
    port: int = Field(8000, ge=1024, le=65000, description="first vLLM port on each node")
    python: str = Field("python3", description="interpreter with vllm, ray and servemark")
    vllm_args: list[str] = Field(default_factory=list, description="extra vLLM server arguments")
    ready_timeout_s: float = Field(1800.0, gt=0)
    run_root: Path = Field(Path("servemark-jobs"), description="job logs and results go below")
    scheduler: SchedulerSpec = Field(default_factory=lambda: SchedulerSpec.model_validate({}))
    environment: EnvSpec = Field(default_factory=EnvSpec)
    ray: RaySpec = Field(default_factory=lambda: RaySpec.model_validate({}))
    bench: BenchStep | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", v):
            raise ValueError(f"name {v!r} must be letters, digits, . _ - (max 63)")
        return v

    @field_validator("vllm_args")
    @classmethod
    def _vllm_args(cls, v: list[str]) -> list[str]:
        owned = ("--tensor-parallel-size", "--pipeline-parallel-size", "--port", "--host",
                 "--distributed-executor-backend", "--model", "-tp", "-pp")
        for arg in v:
            if arg.split("=", 1)[0] in owned:
                raise ValueError(f"vllm_args must not set {arg.split('=', 1)[0]}: use the spec's "
                                 "own field (tensor_parallel_size, pipeline_parallel_size, port)")
            if arg.startswith("--hf-token") or arg.startswith("--api-key"):
                raise ValueError(f"{arg.split('=', 1)[0]} would write a secret into the script; "
                                 "pass HF_TOKEN / VLLM_API_KEY through the environment")
        return v

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @model_validator(mode="after")
    def _topology(self) -> ClusterSpec:
        from servemark.deploy.layout import plan_layout

        plan_layout(self)  # raises ValueError with the reason
        return self


JobSpec = ClusterSpec


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"invalid {loc}: {msg}" if loc else msg


def make_cluster_spec(data: dict[str, Any], source: str | None = None,
                      lines: KeyLines | None = None, prefix: tuple[str, ...] = ()) -> ClusterSpec:
    """Validate a dict, turning pydantic's errors into one ConfigError line (naming the file
    and the line of the key, given ``source`` and ``lines``)."""
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as exc:
        message = _first_error(exc)
        if source is not None:
            path = (*prefix, *(str(p) for p in exc.errors()[0]["loc"]))
            message = f"{at_line(source, lines, path)}: {message}"
        raise ConfigError(message, "see the cluster spec fields in README "
                          "(section: Clusters)") from None


def load_cluster_spec(path: Path) -> ClusterSpec:
    """Read a YAML (or JSON) spec file; a top-level ``cluster:`` key is accepted too."""
    data, lines = read_yaml(path, "give the path of a YAML spec")
    prefix: tuple[str, ...] = ()
    if isinstance(data, dict) and isinstance(data.get("cluster"), dict):
        data, prefix = data["cluster"], ("cluster",)
    if not isinstance(data, dict):
        raise ConfigError(f"spec file {path} must hold a mapping", "for example: model: /models/x")
    bench = data.get("bench")
    if isinstance(bench, dict) and isinstance(bench.get("experiment"), str):
        # relative to the cluster spec, like any path a user writes next to it
        data = {**data, "bench": {**bench, "experiment": path.parent / bench["experiment"]}}
    return make_cluster_spec(data, str(path), lines, prefix)
