"""Render a ClusterSpec into a complete sbatch or qsub script (Jinja2 templates in templates/).

Everything a user typed reaches the script either as a validated one-word directive or through
``shlex.quote``; setup lines are the one deliberate exception (they are shell by definition).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, Literal

from servemark._version import __version__
from servemark.deploy.cluster_spec import ClusterSpec, hms, time_to_seconds
from servemark.deploy.layout import Replica, plan_layout
from servemark.errors import ConfigError, DependencyError

TEMPLATES = Path(__file__).with_name("templates")
Scheduler = Literal["slurm", "pbs"]


def _env() -> Any:
    try:
        import jinja2
    except ImportError:
        raise DependencyError("rendering job scripts needs jinja2", "pip install jinja2") from None
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    env.filters["dq"] = lambda v: shell_value(str(v))
    return env


_VAR_REF = re.compile(r"\$(?=\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_])")


def shell_value(value: str) -> str:
    """A double-quoted shell word in which ``$NAME`` and ``${NAME}`` still expand (so
    ``HF_HOME: /scratch/$USER/hf`` works) and nothing else does: no ``$(...)``, backticks or
    escapes."""
    out = []
    for i, ch in enumerate(value):
        if ch in '"\\`':
            out.append("\\" + ch)
        elif ch == "$" and not _VAR_REF.match(value, i):
            out.append("\\$")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def layout_text(spec: ClusterSpec, replicas: list[Replica]) -> str:
    """One phrase for the script header, e.g. ``2 nodes × 8 GPUs, 1 replica of TP 8 × PP 2``."""
    gpus = f" × {spec.gpus_per_node} GPUs" if spec.gpus_per_node else " (CPU)"
    nodes = f"{spec.nodes} node{'s' if spec.nodes > 1 else ''}{gpus}"
    rep = f"{len(replicas)} replica{'s' if len(replicas) > 1 else ''}"
    return (f"{nodes}, {rep} of TP {spec.tensor_parallel_size} × PP "
            f"{spec.pipeline_parallel_size}{' over Ray' if replicas[0].multinode else ''}")


def _words(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def _vllm_args(spec: ClusterSpec) -> str:
    args = ["--model", spec.model]
    if spec.served_model_name:
        args += ["--served-model-name", spec.served_model_name]
    args += ["--tensor-parallel-size", str(spec.tensor_parallel_size)]
    if spec.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(spec.pipeline_parallel_size)]
    return _words(args + spec.vllm_args)


def _run_root(spec: ClusterSpec) -> str:
    """The run root as the script writes it: quoted when it needs to be."""
    text = str(spec.run_root)
    if any(c.isspace() for c in text):
        raise ConfigError("run_root must not contain spaces (it is used in #SBATCH --output)",
                          "choose a path without spaces")
    return shlex.quote(text)


def _pbs_select(spec: ClusterSpec) -> str:
    s = spec.scheduler
    parts = [str(spec.nodes)]
    if s.cpus_per_task:
        parts.append(f"ncpus={s.cpus_per_task}")
    if spec.gpus_per_node:
        parts.append(f"ngpus={spec.gpus_per_node}")
    if s.mem and s.mem != "0":
        parts.append(f"mem={s.mem.lower().removesuffix('b')}b")
    if s.select_extra:
        parts.append(s.select_extra)
    return ":".join(parts)


# the collective libraries' bootstrap interface: the one Ray's node IPs come from
SOCKET_IFNAME_VARS = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def env_vars(spec: ClusterSpec, replicas: list[Replica]) -> dict[str, str]:
    """The variables every node exports. With ``ray.network_interface`` on a multi-node replica,
    gloo and NCCL bootstrap over that interface too (unless the spec sets them): otherwise
    they pick the address the hostname resolves to, which need not be the one Ray uses."""
    out = dict(spec.environment.vars)
    iface = spec.ray.network_interface
    if iface and any(r.multinode for r in replicas):
        for name in SOCKET_IFNAME_VARS:
            out.setdefault(name, iface)
    return out


def _node_ip_args(spec: ClusterSpec) -> str:
    """Where ``jobtools node-ip`` takes each node's IP from (default: the outgoing address)."""
    if spec.ray.hostname_suffix:
        return f" --hostname-suffix {shlex.quote(spec.ray.hostname_suffix)}"
    if spec.ray.network_interface:
        return f" --interface {shlex.quote(spec.ray.network_interface)}"
    return ""


def render(spec: ClusterSpec, scheduler: Scheduler) -> str:
    """The complete job script text for ``scheduler``."""
    replicas = plan_layout(spec)
    ray_gpus = spec.ray.num_gpus if spec.ray.num_gpus is not None else spec.gpus_per_node
    ctx = {
        "spec": spec,
        "s": spec.scheduler,
        "version": __version__,
        "replicas": replicas,
        "env_vars": env_vars(spec, replicas),
        "ray_gpus": ray_gpus,
        "layout_text": layout_text(spec, replicas),
        "run_root": _run_root(spec),
        "vllm_args": _vllm_args(spec),
        "bench": _words(spec.bench.argv()) if spec.bench is not None else None,
        # how long each replica's /health may take: the benchmark step's own limit when set
        "health_timeout_s": spec.ready_timeout_s if spec.bench is None or
        "health_timeout_s" not in spec.bench.model_fields_set else spec.bench.health_timeout_s,
        "iface": _node_ip_args(spec),
        "num_cpus": f" --num-cpus={spec.ray.num_cpus}" if spec.ray.num_cpus else "",
        "select": _pbs_select(spec),
        "walltime": hms(time_to_seconds(spec.scheduler.time)),
        "queue": spec.scheduler.queue or spec.scheduler.partition,
    }
    template = {"slurm": "slurm.sh.j2", "pbs": "pbs.sh.j2"}[scheduler]
    return str(_env().get_template(template).render(**ctx))
