"""Will these vLLM flags fit? A pre-flight check before starting a server, and the largest
``--max-model-len`` a layout holds (pure, given a model architecture and a GPU).

vLLM refuses to start when the KV cache cannot hold one sequence of ``--max-model-len`` tokens
("... is larger than the maximum number of tokens that can be stored in KV cache"), when
``--max-model-len`` exceeds the model's ``max_position_embeddings``, and when the tensor-parallel
size does not divide the attention heads. Finding out takes minutes of loading; these checks take
microseconds. ``serve``/``run`` call :func:`check_fits` and warn before launching::

    fit = check_fits("meta-llama/Llama-3.1-405B-Instruct", "H100", tp=8, pp=2, max_model_len=131072)
    if not fit.fits:
        warn(fit.one_line())      # what blocks, and the largest --max-model-len that fits
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from servemark.errors import ConfigError
from servemark.plan.arch import ModelArch
from servemark.plan.catalog import GIB, GPU, get_gpu, gpu_catalog, resolve_model
from servemark.plan.memory import (
    MemoryPlan,
    Runtime,
    kv_bytes_per_token,
    model_dtype,
    norm_dtype,
    plan_memory,
)
from servemark.plan.predict import tp_is_valid


def resolve_dtypes(arch: ModelArch, dtype: str = "auto", kv_dtype: str = "auto") -> tuple[str, str]:
    """vLLM's ``auto``: weights in the checkpoint's dtype, KV cache in the 16-bit compute dtype."""
    d = model_dtype(arch) if dtype == "auto" else norm_dtype(dtype)
    kv = norm_dtype(kv_dtype, "--kv-cache-dtype", default=d if d in ("bf16", "fp16") else "bf16")
    if kv in ("int4", "int8"):
        raise ConfigError(f"--kv-cache-dtype {kv} is not a KV cache format", "use bf16, fp16, fp8 or fp32")
    return d, kv


def largest_max_model_len(plan: MemoryPlan, arch: ModelArch) -> int:
    """The longest ``--max-model-len`` one replica accepts: every KV token it has room for
    (whole blocks), capped by the model's ``max_position_embeddings``; 0 when the weights leave
    no room at all."""
    tokens = plan.kv_tokens
    if arch.max_position_embeddings:
        tokens = min(tokens, int(arch.max_position_embeddings))
    return max(tokens, 0)


def match_gpu(device_name: str) -> GPU | None:
    """The catalog GPU a device reports itself as (``NVIDIA H100 80GB HBM3`` → H100-SXM): the
    longest catalog name or alias contained in the device name."""
    key = "".join(ch for ch in device_name.lower() if ch.isalnum())
    best: tuple[int, GPU] | None = None
    for gpu in gpu_catalog().values():
        for name in (gpu.name, *gpu.aliases):
            n = "".join(ch for ch in name.lower() if ch.isalnum())
            if n and n in key and (best is None or len(n) > best[0]):
                best = (len(n), gpu)
    return best[1] if best else None


def detected_gpu(device_name: str, total_bytes: float) -> GPU:
    """A GPU for fitting from what the device reports: the catalog entry with the device's own
    total memory, or a memory-only entry for devices the catalog does not know."""
    known = match_gpu(device_name)
    gib = total_bytes / GIB
    if known is not None:
        return replace(known, reported_gib=gib, source=known.source + " (memory as the device reports)")
    return GPU(device_name, "unknown", total_bytes / 1e9, 0.0, 0.0, None, "unknown", 0.0,
               reported_gib=gib, source="reported by the device")


@dataclass
class FitCheck:
    """The verdict on one layout: ``fits`` is False when vLLM would refuse to start."""

    model: str
    gpu: str
    tp: int
    pp: int
    max_model_len: int
    fits: bool
    largest_max_model_len: int
    kv_tokens: int
    max_seqs_at_max_len: int
    weights_per_gpu_gib: float
    kv_budget_per_gpu_gib: float
    problems: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    def one_line(self) -> str:
        """What blocks (or what fits) and what to do, in one line."""
        layout = f"{self.model} on TP{self.tp} x PP{self.pp} {self.gpu}"
        if self.fits:
            return (f"{layout} fits: --max-model-len {self.max_model_len} (largest "
                    f"{self.largest_max_model_len}), {self.max_seqs_at_max_len} such sequences at once")
        return f"{layout}: {'; '.join(self.problems)} — {'; '.join(self.hints)}"


def check_fits(model: str | ModelArch, gpu: str | GPU, tp: int = 1, pp: int = 1,
               max_model_len: int | None = None, dtype: str = "auto", kv_dtype: str = "auto",
               gpu_memory_utilization: float = 0.90, max_num_seqs: int = 256,
               max_num_batched_tokens: int = 8192, runtime: Runtime | None = None) -> FitCheck:
    """Pre-flight check of vLLM flags. ``model`` is a ModelArch or anything ``plan`` accepts
    (config.json, model directory, cached hub name, catalog name); ``max_model_len`` None means
    vLLM's default, the model's ``max_position_embeddings``. Raises ConfigError only for input
    that names nothing (unknown model or GPU, bad dtype). ``runtime``, when given, replaces the
    three vLLM settings before it (and the overhead estimates)."""
    arch = resolve_model(model) if isinstance(model, str) else model
    g = get_gpu(gpu) if isinstance(gpu, str) else gpu
    if tp < 1 or pp < 1:
        raise ConfigError("--tensor-parallel-size and --pipeline-parallel-size must be at least 1",
                          "for example --tensor-parallel-size 8")
    if not 0 < (runtime or Runtime(gpu_memory_utilization)).gpu_memory_utilization <= 1:
        raise ConfigError("--gpu-memory-utilization must be in (0, 1]", "for example 0.9")
    d, kv = resolve_dtypes(arch, dtype, kv_dtype)
    length = max_model_len or arch.max_position_embeddings or 4096
    rt = runtime or Runtime(gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs,
                            max_num_batched_tokens=max_num_batched_tokens)
    mp = plan_memory(arch, g, length, d, kv, tp, pp, runtime=rt)
    largest = largest_max_model_len(mp, arch)
    problems: list[str] = []
    hints: list[str] = []
    if not tp_is_valid(arch, tp):
        problems.append(f"TP {tp} does not divide {arch.num_heads} attention / {arch.num_kv_heads} KV heads")
        hints.append("choose a TP size that divides the heads (see `servemark plan advise`)")
    if arch.max_position_embeddings and length > arch.max_position_embeddings:
        problems.append(f"--max-model-len {length} exceeds the model's {arch.max_position_embeddings} positions")
        hints.append(f"use --max-model-len {arch.max_position_embeddings} or less")
    if mp.kv_budget_per_gpu_bytes <= 0 or mp.kv_blocks == 0:
        problems.append(f"the weights ({mp.weights_per_gpu_bytes / GIB:.1f} GiB per GPU) and runtime "
                        "overhead leave no room for a KV cache")
        hints.append("use more GPUs (--tensor-parallel-size/--pipeline-parallel-size), quantize, or raise "
                     "--gpu-memory-utilization")
    elif mp.kv_tokens < length:
        problems.append(f"the KV cache holds {mp.kv_tokens} tokens, fewer than --max-model-len {length}")
        hints.append(f"use --max-model-len {largest} or less, or more GPUs")
    return FitCheck(
        model=arch.name, gpu=g.name, tp=tp, pp=pp, max_model_len=length, fits=not problems,
        largest_max_model_len=largest, kv_tokens=mp.kv_tokens,
        max_seqs_at_max_len=mp.max_seqs_at_context if not problems else 0,
        weights_per_gpu_gib=mp.weights_per_gpu_bytes / GIB,
        kv_budget_per_gpu_gib=max(mp.kv_budget_per_gpu_bytes, 0.0) / GIB,
        problems=problems, hints=hints,
    )


def largest_len_in_kv_bytes(arch: ModelArch, kv_bytes: float, kv_dtype: str, block_size: int = 16) -> int:
    """The longest sequence a KV cache of ``kv_bytes`` holds for the whole model on one device
    (vLLM's CPU backend: VLLM_CPU_KVCACHE_SPACE), in whole blocks, capped by the positions."""
    per_block = kv_bytes_per_token(arch, kv_dtype) * block_size
    tokens = int(max(kv_bytes, 0) // per_block) * block_size
    return min(tokens, int(arch.max_position_embeddings)) if arch.max_position_embeddings else tokens
