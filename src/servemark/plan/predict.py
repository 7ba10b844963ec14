"""Roofline-style performance predictor (pure).

Prefill is bound by compute (2 FLOPs per active parameter per token, plus causal attention),
decode by memory bandwidth (the weights touched once per step, plus every sequence's KV cache),
whichever is slower; tensor parallelism adds two ring all-reduces per layer over the interconnect,
pipeline parallelism splits the layers into stages that a batch crosses in micro-batches (with a
bubble when there are fewer micro-batches than stages). Efficiency factors (fraction of peak
compute and bandwidth, per-step and per-request overheads) are the only fitted numbers; see
:mod:`servemark.plan.calibrate` and the README for which published data chose them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from servemark.errors import ConfigError
from servemark.plan.arch import ModelArch
from servemark.plan.catalog import GPU
from servemark.plan.memory import DTYPE_BYTES, Runtime, plan_memory, weight_memory


@dataclass(frozen=True)
class Factors:
    """Efficiency factors. The defaults were fitted on the calibration rows of
    plan_measurements.json only (``servemark plan validate --refit`` re-derives them from
    FIT_START); ``request_overhead_s`` is not identifiable from those rows and is an assumption."""

    mfu: float = 0.691  # fraction of peak FLOPs reached by prefill
    mbu: float = 0.846  # fraction of peak memory bandwidth reached by decode
    comm_eff: float = 0.240  # fraction of interconnect bandwidth reached by all-reduce
    step_overhead_s: float = 0.0054  # fixed cost per forward pass (scheduling, launches, sampling)
    request_overhead_s: float = 0.005  # fixed cost per request before its first token (HTTP, tokenize)
    allreduce_latency_s: float = 114e-6  # per all-reduce (two per layer with TP)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Factors:
        known = cls.__dataclass_fields__
        bad = [k for k in data if k not in known and not k.startswith("_")]
        if bad:
            raise ConfigError(f"unknown factor(s): {', '.join(bad)}", f"known: {', '.join(known)}")
        return cls(**{k: float(v) for k, v in data.items() if k in known})


# Where a fit starts: round, physically plausible values (not the fitted defaults).
FIT_START = dict(mfu=0.5, mbu=0.7, comm_eff=0.6, step_overhead_s=0.002, request_overhead_s=0.005,
                 allreduce_latency_s=10e-6)


@dataclass(frozen=True)
class Setup:
    """What is deployed: model, GPU, layout and precisions."""

    arch: ModelArch
    gpu: GPU
    tp: int = 1
    pp: int = 1
    dtype: str = "bf16"
    kv_dtype: str = "bf16"
    runtime: Runtime = Runtime()

    @property
    def gpus(self) -> int:
        return self.tp * self.pp


@dataclass(frozen=True)
class Prediction:
    """One workload point. Times in seconds; throughputs for the whole deployment (tp x pp GPUs)."""

    ttft_s: float
    tpot_s: float
    e2e_s: float
    batch: int  # sequences decoded together (concurrency, capped by KV capacity)
    output_tokens_per_s: float
    total_tokens_per_s: float
    prefill_bound: str  # "compute" | "memory"
    decode_bound: str
    queued: bool  # concurrency exceeded what the KV cache holds

    @property
    def output_tokens_per_s_per_gpu(self) -> float:
        return self.output_tokens_per_s


class Model:
    """The roofline terms for one Setup and Factors; ``serving`` and ``static`` combine them."""

    def __init__(self, setup: Setup, factors: Factors) -> None:
        self.s, self.f = setup, factors
        a = setup.arch
        self.weight_bytes = weight_memory(a, setup.dtype).bytes
        self.kv_tok = 2 * a.num_layers * a.num_kv_heads * a.head_dim * DTYPE_BYTES[setup.kv_dtype]
        self.peak = setup.gpu.peak_flops(setup.dtype)
        self.bw = setup.gpu.mem_bw_gbs * 1e9
        self.link = setup.gpu.interconnect_gbs * 1e9
        # per-token linear FLOPs without the embedding lookup; the LM head counts per output row
        self.linear_flops = 2 * (a.block_params(active_only=True))
        self.head_flops = 2 * a.vocab_size * a.hidden_size
        self.act_bytes = 2.0

    # --- building blocks ---------------------------------------------------------------------
    def _allreduce_s(self, tokens: float) -> float:
        tp = self.s.tp
        if tp == 1:
            return 0.0
        size = tokens * self.s.arch.hidden_size * self.act_bytes
        per = 2 * (tp - 1) / tp * size / (self.link * self.f.comm_eff) + self.f.allreduce_latency_s
        return 2 * self.s.arch.num_layers * per

    def _p2p_s(self, tokens: float) -> float:
        if self.s.pp == 1:
            return 0.0
        size = tokens * self.s.arch.hidden_size * self.act_bytes
        return (self.s.pp - 1) * (size / (self.link * self.f.comm_eff) + self.f.allreduce_latency_s)

    def _weights_touched(self, batch: float) -> float:
        """Bytes of weights read in one step of ``batch`` tokens; MoE reads only the experts hit."""
        a = self.s.arch
        if not a.is_moe:
            return self.weight_bytes
        e, k = a.num_experts, a.experts_per_token
        hit = e * (1 - (1 - k / e) ** max(batch, 1.0))
        expert_bytes = a.num_layers * 3 * a.hidden_size * a.moe_intermediate_size * (
            self.weight_bytes / a.total_params())
        return self.weight_bytes - expert_bytes * (e - hit)

    def prefill_s(self, tokens_per_seq: int, seqs: int = 1) -> tuple[float, str]:
        """Time to process ``seqs`` prompts of ``tokens_per_seq`` tokens together in one forward pass."""
        a = self.s.arch
        n = tokens_per_seq * seqs
        attn = 2 * a.num_layers * a.q_dim * tokens_per_seq**2 * seqs  # QK^T and PV, causal half
        flops = self.linear_flops * n + attn + self.head_flops * seqs
        compute = flops / (self.s.gpus * self.peak * self.f.mfu)
        memory = self._weights_touched(n) / (self.s.gpus * self.bw * self.f.mbu)
        t = max(compute, memory) + self._allreduce_s(n) + self._p2p_s(n) + self.f.step_overhead_s
        return t, "compute" if compute >= memory else "memory"

    def step_s(self, batch: float, context: float) -> tuple[float, str]:
        """One decode step: every sequence of the batch gains one token at mean ``context``.

        With PP the batch is split into micro-batches that follow each other through the stages:
        a token takes ``pp`` stage times, so bubbles appear when batch < pp."""
        a, pp = self.s.arch, self.s.pp
        micro = max(batch / pp, 1.0) if batch >= pp else 1.0
        stage_weights = self._weights_touched(micro) / self.s.gpus
        stage_kv = micro * context * self.kv_tok / self.s.gpus
        memory = (stage_weights + stage_kv) / (self.bw * self.f.mbu)
        flops = micro * (self.linear_flops + self.head_flops + 4 * a.num_layers * a.q_dim * context)
        compute = flops / (self.s.gpus * self.peak * self.f.mfu)
        stage = max(memory, compute) + self._allreduce_s(micro) / pp
        t = pp * stage + self._p2p_s(micro) + self.f.step_overhead_s
        return t, "memory" if memory >= compute else "compute"

    def decode_total_s(self, batch: float, start: int, steps: int) -> float:
        """Sum of ``steps`` decode steps as the context grows from ``start`` (exact, vectorized
        for the memory-bound regime, where step time is linear in context)."""
        if steps <= 0:
            return 0.0
        ctx = start + np.arange(steps)
        t0, _ = self.step_s(batch, float(ctx[0]))
        t1, _ = self.step_s(batch, float(ctx[-1]))
        if steps == 1:
            return t0
        mid, _ = self.step_s(batch, float(ctx[steps // 2]))
        # Simpson-like: exact when linear, close when max() switches regimes in between
        return float(steps * (t0 + 4 * mid + t1) / 6)


def kv_capacity_seqs(setup: Setup, context: int) -> int:
    """How many sequences of ``context`` tokens the KV cache holds (vLLM's block arithmetic)."""
    mp = plan_memory(setup.arch, setup.gpu, context, setup.dtype, setup.kv_dtype, setup.tp, setup.pp,
                     runtime=replace(setup.runtime, max_num_seqs=10**9))
    return mp.max_seqs_at_context


def tp_is_valid(arch: ModelArch, tp: int) -> bool:
    """vLLM's rule: TP divides the attention heads, and KV heads split evenly or replicate."""
    kv = arch.num_kv_heads
    return tp >= 1 and arch.num_heads % tp == 0 and (kv % tp == 0 or tp % kv == 0)


def check_setup(setup: Setup) -> None:
    a = setup.arch
    if not tp_is_valid(a, setup.tp):
        raise ConfigError(f"TP {setup.tp} is not valid for {a.name} ({a.num_heads} attention heads, "
                          f"{a.num_kv_heads} KV heads)", "see the valid sizes in `servemark plan advise`")
    if setup.pp > a.num_layers:
        raise ConfigError(f"PP {setup.pp} exceeds the {a.num_layers} layers of {a.name}", "use fewer stages")


def serving(setup: Setup, factors: Factors, input_len: int, output_len: int, concurrency: int,
            cap_by_memory: bool = True) -> Prediction:
    """Closed-loop serving at ``concurrency`` requests in flight (continuous batching).

    TTFT = request overhead + prefill + half a decode step of the running batch (a new prompt
    waits for the step in progress). TPOT = a decode step at the batch's mean context plus the
    other requests' prefills spread over this request's output. When the KV cache holds fewer
    sequences than ``concurrency``, the rest queue (Little's law adds whole request times)."""
    if input_len < 1 or output_len < 1 or concurrency < 1:
        raise ConfigError("input length, output length and concurrency must be at least 1",
                          "for example --input-len 1000 --output-len 1000 --concurrency 8")
    check_setup(setup)
    m = Model(setup, factors)
    cap = kv_capacity_seqs(setup, input_len + output_len) if cap_by_memory else concurrency
    if cap < 1:
        raise ConfigError(f"{setup.arch.name} with a {input_len + output_len}-token sequence does not fit "
                          f"on {setup.gpus} x {setup.gpu.name}", "add GPUs (--tp/--pp) or shorten the sequence")
    batch = min(concurrency, cap, setup.runtime.max_num_seqs)
    prefill, pbound = m.prefill_s(input_len)
    step, dbound = m.step_s(batch, input_len + output_len / 2)
    ttft = factors.request_overhead_s + prefill + (0.5 * m.step_s(batch - 1, input_len + output_len / 2)[0]
                                                   if batch > 1 else 0.0)
    tpot = step + (batch - 1) / max(output_len, 1) * prefill
    e2e = ttft + (output_len - 1) * tpot
    queued = concurrency > batch
    if queued:
        ttft += (concurrency / batch - 1) * e2e
    rate = batch / e2e  # requests per second in steady state
    return Prediction(ttft, tpot, ttft + (output_len - 1) * tpot, batch, rate * output_len,
                      rate * (input_len + output_len), pbound, dbound, queued)


def static_batch(setup: Setup, factors: Factors, input_len: int, output_len: int,
                 batch: int) -> Prediction:
    """A static batch (offline engines' benchmarks): all prompts prefilled together, then
    ``output_len - 1`` decode steps (the first token comes from the prefill)."""
    check_setup(setup)
    m = Model(setup, factors)
    prefill, pbound = m.prefill_s(input_len, batch)
    decode = m.decode_total_s(batch, input_len + 1, output_len - 1)
    _, dbound = m.step_s(batch, input_len + output_len / 2)
    total = prefill + decode
    tpot = decode / (output_len - 1) if output_len > 1 else math.nan
    return Prediction(prefill, tpot, total, batch, batch * output_len / total,
                      batch * (input_len + output_len) / total, pbound, dbound, False)
