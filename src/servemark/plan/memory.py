"""Memory arithmetic (pure): weights, KV cache per token and per context, runtime overhead, and
the minimum GPU counts. GB = 10^9 bytes, GiB = 2^30 bytes; every figure says which.

Weights: 16-bit models store every parameter in 2 bytes. Quantized formats (fp8, int8, int4)
apply to the linear layers inside the transformer blocks; embeddings and the LM head stay 16-bit,
and int4 adds one 16-bit scale and one 16-bit zero point per group of 128 weights (AWQ/GPTQ).
``params_override`` reproduces back-of-envelope figures that multiply a nominal count by the
bytes per parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servemark.errors import ConfigError
from servemark.plan.arch import ModelArch
from servemark.plan.catalog import GIB, GPU

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
            "float8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "float": "fp32"}
INT4_GROUP = 128


def norm_dtype(name: str | None, flag: str = "--dtype", default: str = "bf16") -> str:
    if name is None or name == "auto":
        return default
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DTYPE_BYTES:
        raise ConfigError(f"{flag}: unknown dtype {name!r}", f"choose one of: {', '.join(DTYPE_BYTES)}")
    return key


def model_dtype(arch: ModelArch) -> str:
    """The dtype the checkpoint declares (bf16 when it declares none or fp32)."""
    d = norm_dtype(arch.torch_dtype, default="bf16") if arch.torch_dtype else "bf16"
    return "bf16" if d == "fp32" else d


def ceil_div(a: float, b: float) -> int:
    """ceil(a / b), robust to float noise (140e9 / 80e9 must stay 2, not 2.0000000001 → 3)."""
    return max(1, math.ceil(a / b - 1e-9))


@dataclass(frozen=True)
class Weights:
    bytes: float
    params: float
    how: str  # the assumption, in words


def weight_memory(arch: ModelArch, dtype: str, params_override: float | None = None) -> Weights:
    b = DTYPE_BYTES[dtype]
    if params_override is not None:
        return Weights(params_override * b, params_override,
                       f"{params_override / 1e9:g}e9 parameters (given) x {b:g} bytes ({dtype})")
    total = arch.total_params()
    if b >= 2:
        return Weights(total * b, total, f"{total / 1e9:.2f}e9 parameters (from config) x {b:g} bytes ({dtype})")
    block, emb = arch.block_params(), arch.embedding_params()
    per = b + (4 / INT4_GROUP if dtype == "int4" else 0.0)
    how = (f"{block / 1e9:.2f}e9 block parameters x {per:g} bytes ({dtype}"
           f"{', +scales per 128' if dtype == 'int4' else ''}) + {emb / 1e9:.2f}e9 embedding/head x 2 bytes")
    return Weights(block * per + emb * 2, total, how)


def kv_bytes_per_token(arch: ModelArch, kv_dtype: str) -> float:
    """2 (K and V) x layers x KV heads x head dim x bytes per element, for the whole model."""
    return 2 * arch.num_layers * arch.num_kv_heads * arch.head_dim * DTYPE_BYTES[kv_dtype]


def kv_bytes_per_token_per_gpu(arch: ModelArch, kv_dtype: str, tp: int, pp: int) -> float:
    """One GPU's share: layers split by PP; KV heads split by TP, replicated when TP > KV heads."""
    heads = max(arch.num_kv_heads // tp, 1)
    layers = math.ceil(arch.num_layers / pp)
    return 2 * layers * heads * arch.head_dim * DTYPE_BYTES[kv_dtype]


@dataclass(frozen=True)
class Runtime:
    """vLLM's memory settings and our estimates of what it uses besides weights and KV cache."""

    gpu_memory_utilization: float = 0.90
    max_num_batched_tokens: int = 8192  # the profiling run's batch: sets the activation peak
    max_num_seqs: int = 256
    block_size: int = 16
    non_torch_gib: float = 0.5  # CUDA context and allocator slack; +0.5 GiB with TP (NCCL buffers)
    cuda_graph_gib: float = 0.5


def overhead_bytes_per_gpu(arch: ModelArch, rt: Runtime, tp: int, act_bytes: float = 2.0) -> dict[str, float]:
    """Activation peak of the profiling run, logits for the sampler, non-torch memory, CUDA graphs."""
    t = rt.max_num_batched_tokens
    h = arch.hidden_size
    inter = arch.moe_intermediate_size * arch.experts_per_token if arch.is_moe else arch.intermediate_size
    per_token = 3 * h + 2 * inter / tp + (arch.q_dim + 2 * arch.kv_dim) / tp
    activations = t * per_token * act_bytes
    logits = min(rt.max_num_seqs, t) * arch.vocab_size * 4  # fp32 logits of the sampled rows
    non_torch = (rt.non_torch_gib + (0.5 if tp > 1 else 0.0)) * GIB
    return {"activations": activations, "logits": logits, "non_torch": non_torch,
            "cuda_graphs": rt.cuda_graph_gib * GIB}


@dataclass(frozen=True)
class MemoryPlan:
    """What a model needs, and what one layout (TP x PP GPUs) leaves for the KV cache."""

    weights: Weights
    kv_per_token_bytes: float
    context: int
    kv_context_bytes: float
    gpu: GPU
    min_gpus_weights: int  # raw: datasheet capacity, no runtime overhead
    min_gpus_context: int  # raw: weights + one full-context sequence
    tp: int
    pp: int
    overhead_per_gpu: dict[str, float]
    kv_budget_per_gpu_bytes: float  # after weights and overhead, under gpu_memory_utilization
    kv_per_token_per_gpu_bytes: float
    kv_blocks: int
    max_seqs_at_context: int
    runtime: Runtime

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def weights_per_gpu_bytes(self) -> float:
        return self.weights.bytes / self.gpus

    @property
    def fits(self) -> bool:
        return self.kv_blocks > 0

    @property
    def kv_tokens(self) -> int:
        return self.kv_blocks * self.runtime.block_size


def plan_memory(arch: ModelArch, gpu: GPU, context: int, dtype: str, kv_dtype: str,
                tp: int = 1, pp: int = 1, params_override: float | None = None,
                runtime: Runtime | None = None) -> MemoryPlan:
    """Memory needs for ``context`` tokens and vLLM's KV budget on ``tp x pp`` GPUs."""
    if context < 1:
        raise ConfigError(f"--context must be at least 1, got {context}", "for example --context 128000")
    if tp < 1 or pp < 1:
        raise ConfigError("--tp and --pp must be at least 1", "for example --tp 4")
    rt = runtime or Runtime()
    weights = weight_memory(arch, dtype, params_override)
    kv_tok = kv_bytes_per_token(arch, kv_dtype)
    kv_ctx = kv_tok * context
    cap = gpu.memory_bytes
    n = tp * pp
    overhead = overhead_bytes_per_gpu(arch, rt, tp)
    budget = (gpu.device_total_bytes * rt.gpu_memory_utilization - weights.bytes / n
              - sum(overhead.values()))
    kv_gpu = kv_bytes_per_token_per_gpu(arch, kv_dtype, tp, pp)
    blocks = max(0, int(budget // (kv_gpu * rt.block_size)))
    per_seq_blocks = math.ceil(context / rt.block_size)
    return MemoryPlan(
        weights=weights, kv_per_token_bytes=kv_tok, context=context, kv_context_bytes=kv_ctx,
        gpu=gpu, min_gpus_weights=ceil_div(weights.bytes, cap),
        min_gpus_context=ceil_div(weights.bytes + kv_ctx, cap), tp=tp, pp=pp,
        overhead_per_gpu=overhead, kv_budget_per_gpu_bytes=budget, kv_per_token_per_gpu_bytes=kv_gpu,
        kv_blocks=blocks, max_seqs_at_context=min(blocks // per_seq_blocks, rt.max_num_seqs),
        runtime=rt,
    )
