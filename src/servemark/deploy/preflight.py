"""Before starting vLLM on GPUs: will these flags fit? (issue: warn instead of waiting minutes for
vLLM to fail). The judgement is the planner's ``check_fits``; this module only reads the vLLM
flags and the node's GPU, and says nothing when it cannot judge (CPU, unknown model or GPU)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from servemark.deploy.devices import parallel_sizes
from servemark.errors import ConfigError


def flag_value(args: Sequence[str], *names: str) -> str | None:
    """The value of a vLLM flag given as ``--flag value`` or ``--flag=value`` (last one wins)."""
    found = None
    items = list(args)
    for i, arg in enumerate(items):
        flag, eq, value = arg.partition("=")
        if flag in names:
            found = value if eq else (items[i + 1] if i + 1 < len(items) else None)
    return found


def gpu_identity() -> tuple[str, float] | None:
    """(name, total bytes) of the node's first GPU from nvidia-smi; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True).stdout
        name, mib = out.splitlines()[0].rsplit(",", 1)
        return name.strip(), float(mib) * 2**20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def fit_warning(model: str, vllm_args: Sequence[str],
                gpu: tuple[str, float] | None) -> str | None:
    """One line when the planner says vLLM will refuse these flags on this GPU, else None."""
    if gpu is None:
        return None
    from servemark.plan.fit import check_fits, detected_gpu

    try:
        tp, pp = parallel_sizes(vllm_args)
        mml = flag_value(vllm_args, "--max-model-len")
        gmu = flag_value(vllm_args, "--gpu-memory-utilization")
        fit = check_fits(
            model, detected_gpu(*gpu), tp, pp,
            max_model_len=int(mml) if mml else None,
            dtype=flag_value(vllm_args, "--dtype") or "auto",
            kv_dtype=flag_value(vllm_args, "--kv-cache-dtype") or "auto",
            gpu_memory_utilization=float(gmu) if gmu else 0.90,
        )
    except (ConfigError, ValueError):
        return None  # a model or flag the planner does not know: vLLM will judge
    return None if fit.fits else f"these flags will not fit: {fit.one_line()}"
