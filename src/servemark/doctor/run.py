"""``diagnose(options) -> checks``: gather the facts (slow probes in parallel threads) and turn
them into checks, in the order the CLI prints them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from servemark._version import __version__
from servemark.doctor import checks as C
from servemark.doctor import probes as P
from servemark.doctor.checks import Check
from servemark.doctor.endpoint import probe_endpoint
from servemark.errors import ConfigError
from servemark.plan.arch import ModelArch
from servemark.plan.catalog import GIB, GPU, get_gpu, resolve_model
from servemark.plan.fit import (
    check_fits,
    detected_gpu,
    largest_len_in_kv_bytes,
    resolve_dtypes,
)
from servemark.plan.memory import weight_memory
from servemark.plan.predict import tp_is_valid

VLLM_DEFAULT_PORT = 8000


@dataclass(frozen=True)
class DoctorOptions:
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    gpu: str | None = None  # catalog name; default: the GPUs detected here
    num_gpus: int | None = None  # total GPUs of one server (TP x PP)
    tp: int | None = None
    pp: int = 1
    max_model_len: int | None = None
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.90
    port: int = VLLM_DEFAULT_PORT
    vllm_timeout_s: float = 180.0
    endpoint_timeout_s: float = 10.0


def _layout(opts: DoctorOptions) -> tuple[int, int]:
    pp = opts.pp
    if opts.num_gpus is not None and opts.tp is not None and opts.tp * pp != opts.num_gpus:
        raise ConfigError(f"--num-gpus {opts.num_gpus} is not --tp {opts.tp} x --pp {pp}",
                          "give --num-gpus alone, or --tp and --pp")
    if opts.tp is not None:
        return opts.tp, pp
    if opts.num_gpus is not None:
        if opts.num_gpus % pp:
            raise ConfigError(f"--num-gpus {opts.num_gpus} is not a multiple of --pp {pp}", "for example --num-gpus 8 --pp 2")
        return opts.num_gpus // pp, pp
    return 1, pp


def _smallest_fitting(arch: ModelArch, gpu: GPU, opts: DoctorOptions, length: int) -> str | None:
    for pp in (1, 2, 4):
        for tp in (1, 2, 4, 8):
            if (tp, pp) != _layout(opts) and tp_is_valid(arch, tp):
                fit = check_fits(arch, gpu, tp, pp, length, opts.dtype,
                                 gpu_memory_utilization=opts.gpu_memory_utilization)
                if fit.fits:
                    return f"it fits on TP{tp} x PP{pp} ({tp * pp} x {gpu.name})"
    return None


def fit_checks(arch: ModelArch, opts: DoctorOptions, devices: list[tuple[str, int]], host: P.Host) -> list[Check]:
    """The planner's verdict for the given (or detected) GPUs, or for vLLM's CPU backend."""
    tp, pp = _layout(opts)
    gpu = get_gpu(opts.gpu) if opts.gpu else (detected_gpu(*devices[0]) if devices else None)
    if gpu is not None:
        fit = check_fits(arch, gpu, tp, pp, opts.max_model_len, opts.dtype,
                         gpu_memory_utilization=opts.gpu_memory_utilization)
        suggestion = None if fit.fits else _smallest_fitting(arch, gpu, opts, fit.max_model_len)
        out = C.check_fit(fit, suggestion)
        if devices and not opts.gpu and tp * pp > len(devices):
            out.append(Check("gpu count", "error", f"TP{tp} x PP{pp} needs {tp * pp} GPUs; {len(devices)} visible",
                             "run on a node with more GPUs, or lower --tp/--pp"))
        return out
    d, kv = resolve_dtypes(arch, opts.dtype)
    weights = weight_memory(arch, d).bytes
    space = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "").strip()
    total = host.mem_total_bytes or 0
    if space and space != "0":
        kv_bytes, kv_from = float(space) * GIB, f"VLLM_CPU_KVCACHE_SPACE={space}"
        reserve = kv_bytes + weights
        fix = "lower VLLM_CPU_KVCACHE_SPACE (GiB), or free memory"
    else:
        # vLLM's CPU worker reserves total memory x --gpu-memory-utilization and gives the KV
        # cache what the process does not use of it (vllm/v1/worker/cpu_worker.py)
        reserve = total * opts.gpu_memory_utilization
        kv_bytes = max(reserve - weights, 0.0)
        kv_from = f"--gpu-memory-utilization {opts.gpu_memory_utilization:g} of memory, less the weights"
        fix = "set VLLM_CPU_KVCACHE_SPACE (GiB of KV cache, e.g. 4) or lower --gpu-memory-utilization (e.g. 0.5)"
    length = opts.max_model_len or arch.max_position_embeddings or 4096
    largest = largest_len_in_kv_bytes(arch, kv_bytes, kv)
    return C.check_cpu_fit(arch.name, weights, kv_bytes, kv_from, reserve, host.mem_available_bytes, largest,
                           length, fix)


def _launchers() -> dict[str, tuple[list[str], str | None, str | None]]:
    """launcher → (commands found, version, why the main command fails)."""
    out: dict[str, tuple[list[str], str | None, str | None]] = {}
    for name, cmds in (("slurm", ("sbatch", "srun", "squeue")), ("pbs", ("qsub", "qstat"))):
        found = [c for c in cmds if P.find_command(c)]
        exe = P.find_command(cmds[0])
        version, error = P.command_version(exe) if exe else (None, None)
        out[name] = (found, version, error)
    ray = P.find_command("ray")
    version = None
    if ray:
        try:
            from importlib.metadata import version as dist_version

            version = f"ray {dist_version('ray')}"
        except Exception:  # ray's CLI may belong to another environment
            version = None
    out["ray"] = ([ray] if ray else [], version, None)
    return out


def diagnose(opts: DoctorOptions, on_check: Callable[[Check], None] | None = None) -> list[Check]:
    """Every check, in print order. ``on_check`` sees each as soon as it is known."""
    _layout(opts)  # bad flags fail now, not after the slow probes
    if opts.gpu:
        get_gpu(opts.gpu)
    results: list[Check] = []
    files: P.ModelFiles | None = None
    arch: ModelArch | None = None
    plan_error: ConfigError | None = None

    def add(*checks: Check) -> None:
        for c in checks:
            results.append(c)
            if on_check:
                on_check(c)

    with ThreadPoolExecutor(max_workers=4) as pool:
        vllm_f = pool.submit(P.probe_vllm, opts.vllm_timeout_s)
        torch_f = pool.submit(P.probe_torch)
        smi_f = pool.submit(P.probe_nvidia_smi)
        endpoint_f = (pool.submit(probe_endpoint, opts.base_url, opts.model, opts.api_key, opts.endpoint_timeout_s)
                      if opts.base_url else None)
        v = sys.version_info
        add(C.check_python((v.major, v.minor, v.micro), sys.executable), C.check_servemark(__version__))
        host = P.probe_host()
        torch, smi = torch_f.result(), smi_f.result()
        devices = C.devices_of(torch, smi)
        add(C.check_vllm(vllm_f.result(), needed=opts.base_url is None, accelerators=len(devices)))
        add(C.check_accelerators(torch, smi), C.check_host(host))
        cache = P.hf_cache_dir()
        disk = P.probe_disk(cache)
        add(C.check_hf_cache(disk))
        if opts.model:
            files = P.probe_model_files(opts.model, cache)
            try:
                arch = resolve_model(str(files.path) if files.path else opts.model)
            except ConfigError as exc:
                plan_error = exc
            weights = weight_memory(arch, resolve_dtypes(arch, opts.dtype)[0]).bytes if arch else None
            offline = P.env_flag("HF_HUB_OFFLINE") or P.env_flag("TRANSFORMERS_OFFLINE")
            add(C.check_model_files(opts.model, files, offline, weights, disk))
        add(C.check_token(P.token_source(), files))
        free = P.port_free(opts.port)
        add(C.check_port(opts.port, free, None if free else P.next_free_port(opts.port)))
        add(*C.check_launchers(_launchers()))
        if opts.model:
            if arch is not None:
                add(*fit_checks(arch, opts, devices, host))
            elif plan_error is not None:
                add(Check("model fits", "warning", f"cannot plan: {plan_error.message}",
                          plan_error.hint or "pass a model directory or a cached hub id"))
        if endpoint_f is not None:
            add(*C.check_endpoint(endpoint_f.result()))
    return results
