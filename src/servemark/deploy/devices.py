"""Which devices each replica gets: GPUs through ``CUDA_VISIBLE_DEVICES``, CPU cores through
vLLM's ``VLLM_CPU_OMP_THREADS_BIND``.

Planning is pure (:func:`plan_replicas` takes the device list); detection (:func:`detect`) reads
the machine. vLLM's CPU backend separates the core sets of several ranks (TP×PP > 1) with ``|``
(documented beside ``VLLM_CPU_OMP_THREADS_BIND`` in ``vllm/envs.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from servemark.errors import ConfigError

DeviceKind = Literal["gpu", "cpu"]
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


@dataclass(frozen=True, slots=True)
class Devices:
    """What one node offers: GPU ids (as CUDA_VISIBLE_DEVICES names them) or CPU core ids."""

    kind: DeviceKind
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReplicaDevices:
    """The devices of one replica and the environment that confines it to them."""

    index: int
    ids: tuple[int, ...]
    env: dict[str, str]


def parallel_sizes(vllm_args: Sequence[str]) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel) sizes from vLLM flags (default 1 each)."""
    names = {
        "--tensor-parallel-size": 0, "-tp": 0,
        "--pipeline-parallel-size": 1, "-pp": 1,
    }
    sizes = [1, 1]
    args = list(vllm_args)
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag not in names:
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        try:
            sizes[names[flag]] = int(value)
        except ValueError:
            raise ConfigError(f"{flag} needs an integer, got {value!r}",
                              f"for example {flag} 2") from None
    return sizes[0], sizes[1]


def compact_ranges(ids: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"`` (the form vLLM's CPU binding variable accepts)."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(ids):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def plan_replicas(
    replicas: int | Literal["max"],
    devices: Devices,
    ranks: int = 1,
    per_replica: int | None = None,
) -> list[ReplicaDevices]:
    """Split the node's devices into disjoint sets, one per replica.

    GPUs: each replica gets ``ranks`` (TP×PP) GPUs; an error if there are not enough; ``max`` is
    ``len(gpus) // ranks``. CPU: each replica gets ``per_replica`` cores (default: an even share,
    and for ``max`` one core per rank), split into ``ranks`` groups joined by ``|``.
    """
    n = len(devices.ids)
    if devices.kind == "gpu":
        size = ranks
        what = f"TP×PP = {ranks} GPUs per replica"
    else:
        if per_replica is None:
            per_replica = ranks if replicas == "max" else max(n // int(replicas), 0)
        if per_replica < ranks:
            raise ConfigError(
                f"{per_replica} CPU cores per replica cannot host TP×PP = {ranks} ranks",
                "give each replica at least one core per rank (--cores-per-replica)",
            )
        size = per_replica
        what = f"{size} CPU cores per replica"
    count = n // size if size else 0
    if replicas == "max":
        if count < 1:
            raise ConfigError(f"not even one replica fits: {what}, {n} available",
                              "lower the parallel sizes or free devices")
        replicas = count
    if replicas < 1:
        raise ConfigError(f"replicas must be ≥ 1, got {replicas}", "for example --replicas 2")
    if replicas * size > n:
        noun = "GPUs" if devices.kind == "gpu" else "CPU cores"
        raise ConfigError(
            f"{replicas} replicas need {replicas * size} {noun} ({what}); this node has {n}",
            f"use --replicas {count} or fewer (or --replicas max)" if count else
            "lower the parallel sizes",
        )
    plan = []
    for r in range(replicas):
        ids = devices.ids[r * size:(r + 1) * size]
        if devices.kind == "gpu":
            env = {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in ids)}
        else:
            per_rank = size // ranks
            groups = [ids[k * per_rank:(k + 1) * per_rank] for k in range(ranks)]
            env = {CPU_BIND_ENV: "|".join(compact_ranges(g) for g in groups)}
        plan.append(ReplicaDevices(r, tuple(ids), env))
    return plan


def _visible_gpus() -> tuple[int, ...] | None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        try:
            return tuple(int(x) for x in visible.split(",") if x.strip())
        except ValueError:
            raise ConfigError(f"CUDA_VISIBLE_DEVICES={visible!r} is not a list of GPU indices",
                              "use indices such as 0,1,2,3 (UUIDs are not supported)") from None
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(int(line) for line in out.split() if line.strip().isdigit())


def detect(kind: Literal["auto", "gpu", "cpu"] = "auto") -> Devices:
    """The node's devices: GPUs when there are any (or ``kind="gpu"``), otherwise CPU cores."""
    gpus = _visible_gpus() if kind != "cpu" else None
    if kind == "gpu" and not gpus:
        raise ConfigError("no GPUs found (nvidia-smi lists none and CUDA_VISIBLE_DEVICES is unset)",
                          "use --device cpu, or run on a GPU node")
    if gpus:
        return Devices("gpu", gpus)
    return Devices("cpu", tuple(sorted(os.sched_getaffinity(0))))
