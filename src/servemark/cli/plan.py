"""``servemark plan``: memory and GPU counts, deployment advice, performance prediction,
calibration from runs, and validation against published measurements."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from servemark.cli.common import handle_errors, out, parse_list
from servemark.errors import ConfigError
from servemark.plan import advise as advise_mod
from servemark.plan.arch import ModelArch
from servemark.plan.calibrate import compare, fit, mape
from servemark.plan.catalog import (
    GIB,
    GPU,
    custom_gpu,
    get_gpu,
    gpu_catalog,
    model_names,
    resolve_model,
)
from servemark.plan.memory import Runtime, model_dtype, norm_dtype, plan_memory
from servemark.plan.predict import FIT_START, Factors, Setup, serving, static_batch
from servemark.plan.runs import load_run_points
from servemark.plan.validate import SETS, refit_defaults, validate

app = typer.Typer(name="plan", help="Plan a deployment: memory, GPU count, layout, predicted performance.",
                  no_args_is_help=True)

ModelArg = Annotated[str, typer.Argument(help="config.json, model directory, cached hub name, or catalog name (see `plan models`)")]
GpuOpt = Annotated[str, typer.Option("--gpu", help="Accelerator from the catalog (see `plan gpus`), or 'custom'")]
DtypeOpt = Annotated[str, typer.Option(help="Weights: auto (the checkpoint's), bf16, fp16, fp8, int8, int4")]
KvOpt = Annotated[str, typer.Option(help="KV cache elements: auto (16-bit), bf16, fp16, fp8, fp32")]
MemOpt = Annotated[float | None, typer.Option(help="Override GPU memory, GB (10^9 bytes)")]
BwOpt = Annotated[float | None, typer.Option(help="Override memory bandwidth, GB/s")]
FlopsOpt = Annotated[float | None, typer.Option(help="Override dense peak, TFLOPS")]
LinkOpt = Annotated[float | None, typer.Option(help="Override interconnect bandwidth per GPU, GB/s")]
UtilOpt = Annotated[float, typer.Option(help="vLLM --gpu-memory-utilization")]
SeqsOpt = Annotated[int, typer.Option(help="vLLM --max-num-seqs")]
FactorsOpt = Annotated[Path | None, typer.Option(help="Efficiency factors JSON (from `plan calibrate --save`)")]


def _gpu(name: str, memory_gb: float | None, mem_bw_gbs: float | None, tflops: float | None,
         interconnect_gbs: float | None) -> GPU:
    base = None if name.lower() == "custom" else get_gpu(name)
    return custom_gpu(base, memory_gb, mem_bw_gbs, tflops, interconnect_gbs)


def _dtypes(arch: ModelArch, dtype: str, kv_dtype: str) -> tuple[str, str]:
    d = model_dtype(arch) if dtype == "auto" else norm_dtype(dtype)
    kv = norm_dtype(kv_dtype, "--kv-dtype", default=d if d in ("bf16", "fp16") else "bf16")
    if kv in ("int4", "int8"):
        raise ConfigError(f"--kv-dtype {kv} is not a KV cache format", "use bf16, fp16, fp8 or fp32")
    return d, kv


def _factors(path: Path | None) -> Factors:
    if path is None:
        return Factors()
    try:
        return Factors.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "pass a file written by `plan calibrate --save`") from None
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        raise ConfigError(f"{path} is not a factors JSON object", "pass a file written by `plan calibrate --save`") from None


def _gb(b: float) -> str:
    return f"{b / 1e9:,.2f} GB"


def _gib(b: float) -> str:
    return f"{b / GIB:,.2f} GiB"


def _params(p: float) -> str:
    return f"{p / 1e9:.2f}e9"


@app.command("gpus")
@handle_errors
def gpus_command() -> None:
    """List the accelerator catalog with its sources."""
    t = Table(title="Accelerators (dense peaks; GB = 10^9 bytes)")
    for col in ("name", "memory", "HBM GB/s", "BF16 TFLOPS", "FP8 TFLOPS", "link GB/s", "source"):
        t.add_column(col, overflow="fold")
    for g in gpu_catalog().values():
        mem = f"{g.memory_gb:g} GB" + (f" ({g.reported_gib:g} GiB reported)" if g.reported_gib else "")
        t.add_row(g.name, mem, f"{g.mem_bw_gbs:g}", f"{g.bf16_tflops:g}", f"{g.fp8_tflops or '-'}",
                  f"{g.interconnect_gbs:g} ({g.interconnect})", g.source)
    out.print(t)


@app.command("models")
@handle_errors
def models_command() -> None:
    """List the built-in model catalog."""
    t = Table(title="Built-in models (from their config.json)")
    for col in ("name", "params", "layers", "heads / KV heads", "head dim", "experts", "source"):
        t.add_column(col, overflow="fold")
    for name in model_names():
        a = resolve_model(name)
        t.add_row(name, _params(a.total_params()), str(a.num_layers), f"{a.num_heads} / {a.num_kv_heads}",
                  str(a.head_dim), f"{a.experts_per_token} of {a.num_experts}" if a.is_moe else "-", a.source or "")
    out.print(t)


@app.command("memory")
@handle_errors
def memory_command(
    model: ModelArg,
    gpu: GpuOpt = "H100-SXM",
    context: Annotated[int | None, typer.Option(help="Tokens of one sequence (default: the model's maximum)")] = None,
    dtype: DtypeOpt = "auto",
    kv_dtype: KvOpt = "auto",
    params: Annotated[float | None, typer.Option(help="Parameter count to use instead of the config's (e.g. 70e9)")] = None,
    tp: Annotated[int | None, typer.Option(help="Tensor-parallel size for the per-GPU section (default: smallest that fits)")] = None,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel size")] = 1,
    gpu_memory_utilization: UtilOpt = 0.90,
    max_num_seqs: SeqsOpt = 256,
    memory_gb: MemOpt = None,
    mem_bw_gbs: BwOpt = None,
    tflops: FlopsOpt = None,
) -> None:
    """Weights, KV cache, overhead, and the minimum GPUs for the weights and for one full context."""
    arch = resolve_model(model)
    g = _gpu(gpu, memory_gb, mem_bw_gbs, tflops, None)
    d, kv = _dtypes(arch, dtype, kv_dtype)
    ctx = context or arch.max_position_embeddings or 4096
    rt = Runtime(gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs)
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError("--gpu-memory-utilization must be in (0, 1]", "for example 0.9")
    if tp is None:
        tp, pp = _smallest_fitting(arch, g, ctx, d, kv, rt, pp)
    mp = plan_memory(arch, g, ctx, d, kv, tp, pp, params, rt)
    t = Table(title=f"{arch.name} on {g.name}: memory (GB = 10^9 bytes, GiB = 2^30 bytes)")
    for col in ("quantity", "GB", "GiB", "how"):
        t.add_column(col, overflow="fold")
    t.add_row("weights", _gb(mp.weights.bytes), _gib(mp.weights.bytes), mp.weights.how)
    kvb = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}[kv]
    t.add_row("KV cache per token", f"{mp.kv_per_token_bytes:,.0f} bytes", f"{mp.kv_per_token_bytes / 1024:,.0f} KiB",
              f"2 x {arch.num_layers} layers x {arch.num_kv_heads} KV heads x {arch.head_dim} head dim x {kvb} bytes ({kv})")
    t.add_row(f"KV cache for {ctx:,} tokens", _gb(mp.kv_context_bytes), _gib(mp.kv_context_bytes), "one sequence")
    t.add_row("min GPUs for the weights", str(mp.min_gpus_weights), "",
              f"{_gb(mp.weights.bytes)} / {g.memory_gb:g} GB per GPU (datasheet), no overhead")
    t.add_row(f"min GPUs for weights + one {ctx:,}-token sequence", str(mp.min_gpus_context), "",
              f"({_gb(mp.weights.bytes)} + {_gb(mp.kv_context_bytes)}) / {g.memory_gb:g} GB, no overhead")
    out.print(t)

    v = Table(title=f"vLLM on TP{tp} x PP{pp} = {tp * pp} x {g.name} (gpu_memory_utilization {rt.gpu_memory_utilization:g})")
    v.add_column("per GPU")
    v.add_column("GiB", justify="right")
    v.add_row("device total" + (" (as CUDA reports)" if g.reported_gib else " (datasheet)"), _gib(g.device_total_bytes))
    v.add_row(f"x {rt.gpu_memory_utilization:g} = vLLM's share", _gib(g.device_total_bytes * rt.gpu_memory_utilization))
    v.add_row("- weights", _gib(mp.weights_per_gpu_bytes))
    for k, val in mp.overhead_per_gpu.items():
        v.add_row(f"- {k.replace('_', ' ')} (estimate)", _gib(val))
    v.add_row("= KV cache budget", _gib(max(mp.kv_budget_per_gpu_bytes, 0.0)))
    v.add_row(f"KV blocks of {rt.block_size} tokens", f"{mp.kv_blocks:,} ({mp.kv_tokens:,} tokens)")
    v.add_row(f"max concurrent {ctx:,}-token sequences", f"{mp.max_seqs_at_context} (max_num_seqs {rt.max_num_seqs})")
    out.print(v)
    notes = ["weights: " + mp.weights.how,
             f"KV dtype {kv}" + (" (as given)" if kv_dtype != "auto" else " (vLLM's auto: the model's 16-bit dtype)"),
             f"GPU capacity for the minimum counts: {g.memory_gb:g} GB datasheet = {g.memory_bytes / GIB:.2f} GiB"]
    if params is not None:
        notes.append(f"parameter count given with --params; the config has {_params(arch.total_params())}")
    elif arch.nominal_params:
        notes.append(f"parameters counted from the config ({_params(arch.total_params())}); "
                     f"the nominal count is {_params(arch.nominal_params)} (--params {arch.nominal_params / 1e9:g}e9 reproduces figures that use it)")
    if arch.sliding_window and arch.sliding_window < ctx:
        notes.append(f"the model has a {arch.sliding_window}-token sliding window; KV is planned for the full context (vLLM's default)")
    if not mp.fits:
        notes.append(f"does not fit: TP{tp} x PP{pp} leaves no KV cache room; try a larger --tp or --pp")
    for n in notes:
        out.print(f"[dim]assumption:[/dim] {n}", highlight=False)


def _smallest_fitting(arch: ModelArch, g: GPU, ctx: int, d: str, kv: str, rt: Runtime, pp: int) -> tuple[int, int]:
    tps = advise_mod.valid_tp_sizes(arch, 8)
    for p in (pp, pp * 2, pp * 4, pp * 8):
        for t in tps:
            if plan_memory(arch, g, ctx, d, kv, t, p, runtime=rt).max_seqs_at_context >= 1:
                return t, p
    return tps[-1], pp


@app.command("advise")
@handle_errors
def advise_command(
    model: ModelArg,
    gpu: GpuOpt = "H100-SXM",
    gpus_per_node: Annotated[int, typer.Option(help="GPUs in one node")] = 8,
    nodes: Annotated[int, typer.Option(help="Nodes")] = 1,
    context: Annotated[int | None, typer.Option(help="Longest sequence to hold (default: input + output)")] = None,
    input_len: Annotated[int, typer.Option(help="Prompt tokens of the workload")] = 1000,
    output_len: Annotated[int, typer.Option(help="Output tokens of the workload")] = 1000,
    dtype: DtypeOpt = "auto",
    kv_dtype: KvOpt = "auto",
    max_tpot_ms: Annotated[float | None, typer.Option(help="Only layouts predicted under this TPOT")] = None,
    gpu_memory_utilization: UtilOpt = 0.90,
    max_num_seqs: SeqsOpt = 256,
    factors: FactorsOpt = None,
) -> None:
    """Valid TP/PP layouts, sequences each holds, and the layout with the most throughput per node."""
    arch = resolve_model(model)
    g = get_gpu(gpu)
    d, kv = _dtypes(arch, dtype, kv_dtype)
    rt = Runtime(gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs)
    adv = advise_mod.advise(arch, g, gpus_per_node, nodes, context, input_len, output_len, d, kv,
                            _factors(factors), rt, max_tpot_ms)
    t = Table(title=f"{arch.name} on {nodes} x {gpus_per_node} {g.name} ({d}, KV {kv}); "
                    f"workload {input_len} in / {output_len} out")
    for col in ("TP", "PP", "replicas", f"seqs at {adv.context:,}", "batch", "TPOT ms", "TTFT ms", "node out tok/s", ""):
        t.add_column(col, justify="right")
    for lay in adv.layouts:
        p = lay.prediction
        mark = "[bold green]recommended[/bold green]" if lay is adv.recommended else ("" if lay.fits else "[red]does not fit[/red]")
        t.add_row(str(lay.tp), str(lay.pp), str(lay.replicas), str(lay.max_seqs_at_context), str(lay.batch),
                  f"{p.tpot_s * 1e3:.1f}" if p else "-", f"{p.ttft_s * 1e3:.0f}" if p else "-",
                  f"{lay.node_output_tokens_per_s:,.0f}" if p else "-", mark)
    out.print(t)
    for r in adv.reasons:
        out.print(f"- {r}", highlight=False)


@app.command("predict")
@handle_errors
def predict_command(
    model: ModelArg,
    gpu: GpuOpt = "H100-SXM",
    tp: Annotated[int, typer.Option(help="Tensor-parallel size")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel size")] = 1,
    input_len: Annotated[int, typer.Option(help="Prompt tokens")] = 1000,
    output_len: Annotated[int, typer.Option(help="Output tokens")] = 1000,
    concurrency: Annotated[str | None, typer.Option(help="Serving: requests in flight, e.g. 1,8,64")] = None,
    batch: Annotated[str | None, typer.Option(help="Static batches (offline engine benchmarks), e.g. 1,64")] = None,
    dtype: DtypeOpt = "auto",
    kv_dtype: KvOpt = "auto",
    factors: FactorsOpt = None,
    gpu_memory_utilization: UtilOpt = 0.90,
    max_num_seqs: SeqsOpt = 256,
    memory_gb: MemOpt = None,
    mem_bw_gbs: BwOpt = None,
    tflops: FlopsOpt = None,
    interconnect_gbs: LinkOpt = None,
) -> None:
    """Predicted TTFT, TPOT and throughput (roofline with fitted efficiency factors)."""
    if concurrency is not None and batch is not None:
        raise ConfigError("--concurrency and --batch are exclusive", "serving uses --concurrency, offline --batch")
    arch = resolve_model(model)
    g = _gpu(gpu, memory_gb, mem_bw_gbs, tflops, interconnect_gbs)
    d, kv = _dtypes(arch, dtype, kv_dtype)
    setup = Setup(arch, g, tp, pp, d, kv, Runtime(gpu_memory_utilization=gpu_memory_utilization,
                                                    max_num_seqs=max_num_seqs))
    f = _factors(factors)
    loads = parse_list(batch or concurrency or "1", int, "--batch" if batch else "--concurrency") or [1]
    t = Table(title=f"{arch.name} on TP{tp} x PP{pp} {g.name} ({d}, KV {kv}): {input_len} in / {output_len} out, predicted")
    for col in ("batch" if batch else "concurrency", "TTFT ms", "TPOT ms", "E2E s", "out tok/s", "total tok/s", "bound (prefill/decode)", "note"):
        t.add_column(col, justify="right")
    for n in loads:
        p = (static_batch(setup, f, input_len, output_len, n) if batch
             else serving(setup, f, input_len, output_len, n))
        note = f"KV holds {p.batch}; rest queue" if p.queued else ""
        t.add_row(str(n), f"{p.ttft_s * 1e3:,.1f}", f"{p.tpot_s * 1e3:,.2f}", f"{p.e2e_s:,.2f}",
                  f"{p.output_tokens_per_s:,.0f}", f"{p.total_tokens_per_s:,.0f}",
                  f"{p.prefill_bound}/{p.decode_bound}", note)
    out.print(t)
    out.print(f"[dim]factors:[/dim] {', '.join(f'{k}={v:.3g}' for k, v in f.to_dict().items())}"
              f"{'' if factors else ' (defaults fitted on published TensorRT-LLM figures; see `plan validate`)'}",
              highlight=False)


@app.command("calibrate")
@handle_errors
def calibrate_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="servemark run directories (closed-loop points)")],
    model: Annotated[str, typer.Option(help="The served model: config.json, directory, hub name or catalog name")],
    gpu: GpuOpt = "H100-SXM",
    tp: Annotated[int, typer.Option(help="Tensor-parallel size of the measured server")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel size of the measured server")] = 1,
    dtype: DtypeOpt = "auto",
    kv_dtype: KvOpt = "auto",
    memory_gb: MemOpt = None,
    mem_bw_gbs: BwOpt = None,
    tflops: FlopsOpt = None,
    interconnect_gbs: LinkOpt = None,
    save: Annotated[Path | None, typer.Option(help="Write the fitted factors here (JSON) for predict/advise --factors")] = None,
) -> None:
    """Fit the efficiency factors to your own measured runs; show predicted vs measured per point."""
    arch = resolve_model(model)
    g = _gpu(gpu, memory_gb, mem_bw_gbs, tflops, interconnect_gbs)
    d, kv = _dtypes(arch, dtype, kv_dtype)
    setup = Setup(arch, g, tp, pp, d, kv, Runtime(max_num_seqs=10**6))
    points = load_run_points(run_dirs, setup)
    before = compare(points, Factors())
    fitted = fit(points, Factors(**FIT_START))
    after = compare(points, fitted)
    t = Table(title=f"{arch.name} on TP{tp} x PP{pp} {g.name}: predicted vs measured")
    for col in ("point", "metric", "measured", "default factors", "err", "fitted", "err"):
        t.add_column(col, justify="right")
    for b, a in zip(before, after, strict=True):
        t.add_row(b.label, b.metric, f"{b.measured:,.3g}", f"{b.predicted:,.3g}", f"{b.error_pct:+.0f}%",
                  f"{a.predicted:,.3g}", f"{a.error_pct:+.0f}%")
    out.print(t)
    for metric, (err, n) in mape(after).items():
        out.print(f"MAPE {metric}: {mape(before)[metric][0]:.1f}% with default factors -> {err:.1f}% fitted ({n} points)", highlight=False)
    out.print("fitted factors: " + ", ".join(f"{k}={v:.3g}" for k, v in fitted.to_dict().items()), highlight=False)
    if save is not None:
        save.write_text(json.dumps(fitted.to_dict(), indent=2) + "\n")
        out.print(f"saved: {save}", highlight=False)


@app.command("validate")
@handle_errors
def validate_command(
    factors: FactorsOpt = None,
    refit: Annotated[bool, typer.Option(help="Re-derive the default factors from the calibration rows first")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON")] = False,
) -> None:
    """Predictions vs the shipped published measurements: error per row, MAPE per metric and set."""
    f = refit_defaults() if refit else _factors(factors)
    v = validate(f)
    if as_json:
        doc = {"factors": f.to_dict(), "sources": v.sources,
               "rows": [{"id": r.label, "set": r.set, "source": r.source, "metric": r.metric,
                         "measured": r.measured, "predicted": r.predicted, "error_pct": r.error_pct} for r in v.rows],
               "mape_pct": {s: {m: e for m, (e, _) in v.mape(s).items()} for s in SETS}}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    for which in SETS:
        t = Table(title=f"{which} rows ({'chose the factors' if which == 'calibration' else 'never used for fitting'})")
        for col in ("row", "metric", "measured", "predicted", "error"):
            t.add_column(col, justify="right")
        for r in v.rows:
            if r.set == which:
                t.add_row(r.label, r.metric, f"{r.measured:,.4g}", f"{r.predicted:,.4g}", f"{r.error_pct:+.1f}%")
        out.print(t)
        for metric, (err, n) in v.mape(which).items():
            out.print(f"{which} MAPE {metric}: {err:.1f}% over {n} rows", highlight=False)
    out.print("factors: " + ", ".join(f"{k}={val:.3g}" for k, val in f.to_dict().items()), highlight=False)
    for key, src in v.sources.items():
        out.print(f"[dim]{key}:[/dim] {src}", highlight=False)
