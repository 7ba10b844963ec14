"""Deployment advice (pure): which TP/PP layouts are valid, how many sequences each holds, and the
layout that gives a node the most throughput, with the reasoning in words.

Throughput per node = replicas x one replica's predicted throughput at its largest batch (KV
capacity at the given lengths, capped by max_num_seqs). Smaller replicas avoid all-reduce and
keep more GPUs streaming weights independently, so when the model fits, more replicas usually
win; a bigger TP wins when it buys KV room for a much larger batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servemark.errors import ConfigError
from servemark.plan.arch import ModelArch
from servemark.plan.catalog import GPU
from servemark.plan.memory import Runtime, plan_memory
from servemark.plan.predict import Factors, Prediction, Setup, serving, tp_is_valid


def valid_tp_sizes(arch: ModelArch, max_tp: int) -> list[int]:
    return [t for t in range(1, max_tp + 1) if tp_is_valid(arch, t)]


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    replicas: int
    fits: bool
    max_seqs_at_context: int  # full --context sequences one replica holds
    batch: int  # sequences decoded together at the --input-len/--output-len workload
    prediction: Prediction | None

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def node_output_tokens_per_s(self) -> float:
        return self.replicas * self.prediction.output_tokens_per_s if self.prediction else 0.0


@dataclass
class Advice:
    arch: ModelArch
    gpu: GPU
    gpus_total: int
    context: int
    input_len: int
    output_len: int
    valid_tp: list[int]
    layouts: list[Layout]
    recommended: Layout | None
    reasons: list[str] = field(default_factory=list)


def advise(arch: ModelArch, gpu: GPU, gpus_per_node: int = 8, nodes: int = 1, context: int | None = None,
           input_len: int = 1000, output_len: int = 1000, dtype: str = "bf16", kv_dtype: str = "bf16",
           factors: Factors | None = None, runtime: Runtime | None = None,
           max_tpot_ms: float | None = None) -> Advice:
    """Every valid layout on ``nodes`` x ``gpus_per_node`` GPUs, and the best one."""
    if gpus_per_node < 1 or nodes < 1:
        raise ConfigError("--gpus-per-node and --nodes must be at least 1", "for example --gpus-per-node 8")
    rt = runtime or Runtime()
    f = factors or Factors()
    ctx = context or input_len + output_len
    total = gpus_per_node * nodes
    tps = valid_tp_sizes(arch, gpus_per_node)
    layouts: list[Layout] = []
    for tp in tps:
        pp = 1
        while tp * pp <= total and pp <= arch.num_layers:
            # PP only across whole nodes' worth of TP, or within a node
            if pp == 1 or tp == gpus_per_node or tp * pp <= gpus_per_node:
                layouts.append(_layout(arch, gpu, tp, pp, total // (tp * pp), ctx, input_len, output_len,
                                       dtype, kv_dtype, f, rt))
            pp *= 2
    feasible = [lay for lay in layouts if lay.fits and lay.prediction is not None]
    reasons: list[str] = []
    if max_tpot_ms is not None:
        ok = [lay for lay in feasible if lay.prediction and lay.prediction.tpot_s * 1e3 <= max_tpot_ms]
        if feasible and not ok:
            reasons.append(f"no layout meets TPOT <= {max_tpot_ms:g} ms; showing the fastest anyway")
        feasible = ok or feasible
    rec = max(feasible, key=lambda lay: (lay.node_output_tokens_per_s, -lay.gpus_per_replica), default=None)
    reasons += _reasons(arch, gpu, tps, layouts, rec, total, ctx)
    return Advice(arch, gpu, total, ctx, input_len, output_len, tps, layouts, rec, reasons)


def _layout(arch: ModelArch, gpu: GPU, tp: int, pp: int, replicas: int, ctx: int, input_len: int,
            output_len: int, dtype: str, kv_dtype: str, f: Factors, rt: Runtime) -> Layout:
    mp = plan_memory(arch, gpu, ctx, dtype, kv_dtype, tp, pp, runtime=rt)
    work = plan_memory(arch, gpu, input_len + output_len, dtype, kv_dtype, tp, pp, runtime=rt)
    fits = mp.max_seqs_at_context >= 1
    pred = None
    if fits and work.max_seqs_at_context >= 1:
        setup = Setup(arch, gpu, tp, pp, dtype, kv_dtype, rt)
        pred = serving(setup, f, input_len, output_len, work.max_seqs_at_context)
    return Layout(tp, pp, replicas, fits, mp.max_seqs_at_context, work.max_seqs_at_context, pred)


def _reasons(arch: ModelArch, gpu: GPU, tps: list[int], layouts: list[Layout], rec: Layout | None,
             total: int, ctx: int) -> list[str]:
    out = [f"valid TP sizes for {arch.num_heads} attention / {arch.num_kv_heads} KV heads: "
           f"{', '.join(map(str, tps))}"]
    fitting = [lay for lay in layouts if lay.fits]
    if not fitting:
        out.append(f"no layout on {total} x {gpu.name} holds the weights plus one {ctx}-token sequence; "
                   "add nodes, quantize (--dtype fp8/int4) or shorten --context")
        return out
    smallest = min(fitting, key=lambda lay: lay.gpus_per_replica)
    out.append(f"smallest replica that holds one {ctx}-token sequence: TP{smallest.tp} x PP{smallest.pp} "
               f"({smallest.gpus_per_replica} GPU{'s' if smallest.gpus_per_replica > 1 else ''})")
    if rec is None or rec.prediction is None:
        return out
    out.append(f"recommended: {rec.replicas} replica(s) of TP{rec.tp} x PP{rec.pp}, batch {rec.batch} each, "
               f"about {rec.node_output_tokens_per_s:,.0f} output tok/s in total "
               f"(TPOT {rec.prediction.tpot_s * 1e3:.1f} ms, decode {rec.prediction.decode_bound}-bound)")
    others = [lay for lay in fitting if lay is not rec and lay.prediction is not None]
    if others:
        best_other = max(others, key=lambda lay: lay.node_output_tokens_per_s)
        gain = rec.node_output_tokens_per_s / max(best_other.node_output_tokens_per_s, 1e-9)
        why = ("more replicas stream the weights in parallel and skip all-reduce"
               if rec.gpus_per_replica < best_other.gpus_per_replica else
               "the larger replica holds a much larger batch in its KV cache")
        out.append(f"next best: {best_other.replicas} x TP{best_other.tp} x PP{best_other.pp} "
                   f"(the recommended layout gives {gain:.2f}x its throughput): {why}")
    return out
