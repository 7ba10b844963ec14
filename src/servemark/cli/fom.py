"""``servemark throughput``, ``servemark sweep`` and ``servemark fom``: offline (vllm.LLM) and
online batch benchmarks, resumable sweep matrices and the three-scenario FOM suite, to CSV."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from servemark.cli.common import err, handle_errors, out, parse_list
from servemark.cli.fom_render import LinePrinter, fom_lines, results_table
from servemark.errors import ConfigError
from servemark.offline.engineargs import parse_assignments, parse_engine_args
from servemark.specfile import at_line
from servemark.suites.csvformat import FORMATS, get_format
from servemark.suites.fom import DEFAULT_SCENARIOS, FomResult, Scenario, fom_points
from servemark.suites.matrix import make_sweep_spec
from servemark.suites.measurement import Measurement
from servemark.suites.point import Point, RunSettings
from servemark.suites.sweep import ResultsFile, SweepOutcome, load_yaml_spec, run_points

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
FORMAT_HELP = "CSV columns: " + "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values())

# Options shared by the three commands.
ModelOpt = Annotated[str | None, typer.Option(help="Offline: model path or hub name for vllm.LLM. Online: served model name (default: the only one)")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="Online mode: server root URL; without it, runs offline with vllm.LLM")]
TpOpt = Annotated[int, typer.Option("--tensor-parallel-size", "--tp", help="Tensor-parallel size (online: a label for the CSV)")]
PpOpt = Annotated[int, typer.Option("--pipeline-parallel-size", "--pp", help="Pipeline-parallel size (online: a label)")]
DtypeOpt = Annotated[str | None, typer.Option(help="Model dtype, e.g. float16, bfloat16 (online: a label)")]
TrustOpt = Annotated[bool, typer.Option(help="Let vLLM run the model's own code")]
MmlOpt = Annotated[int | None, typer.Option(help="vLLM max model length (offline)")]
GpuMemOpt = Annotated[float | None, typer.Option(help="Fraction of GPU memory vLLM may use")]
EagerOpt = Annotated[bool | None, typer.Option(help="Disable CUDA graphs / compilation (always on for CPU tests)")]
EngineArgOpt = Annotated[list[str] | None, typer.Option(help="Any vLLM engine argument, KEY=VALUE (repeatable); unknown --flags are passed through too")]
WarmOpt = Annotated[int, typer.Option(help="Warm-up iterations (not timed)")]
ItersOpt = Annotated[int, typer.Option(help="Timed iterations")]
SeedOpt = Annotated[int, typer.Option(help="Seed for the random prompts")]
TimeoutOpt = Annotated[float | None, typer.Option(help="Seconds one point may take (engine start included); then it fails")]
TokenizerOpt = Annotated[str | None, typer.Option(help="Online: local tokenizer (default: the server's /tokenize)")]
KeyOpt = Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", show_envvar=True, help="Online: bearer key (never recorded)")]
HwOpt = Annotated[str | None, typer.Option(help="Hardware name for the CSV (default: detected GPU or CPU model)")]
NumHwOpt = Annotated[int | None, typer.Option(help="Number of devices for the CSV (default: TP × PP GPUs, or CPU sockets)")]
ModelCfgOpt = Annotated[str | None, typer.Option(help="config.json (or its directory) giving layers and hidden size for the FLOP-rate form (default: the model's)")]
FmtOpt = Annotated[str, typer.Option(help=FORMAT_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout")]


def _engine_args(ctx: typer.Context, engine_arg: list[str] | None, trust_remote_code: bool,
                 gpu_memory_utilization: float | None, enforce_eager: bool | None) -> dict[str, Any]:
    args = parse_assignments(engine_arg)
    args.update(parse_engine_args(list(ctx.args)))
    if trust_remote_code:
        args["trust_remote_code"] = True
    if gpu_memory_utilization is not None:
        args["gpu_memory_utilization"] = gpu_memory_utilization
    if enforce_eager is not None:
        args["enforce_eager"] = enforce_eager
    return args


def _settings(ctx: typer.Context, *, model: str | None, base_url: str | None, dtype: str | None,
              engine_arg: list[str] | None, trust_remote_code: bool,
              gpu_memory_utilization: float | None, enforce_eager: bool | None,
              num_iters_warmup: int, num_iters: int, seed: int, timeout: float | None,
              tokenizer: str | None, api_key: str | None, hardware: str | None,
              num_hardware: int | None, model_config: str | None) -> RunSettings:
    engine = _engine_args(ctx, engine_arg, trust_remote_code, gpu_memory_utilization, enforce_eager)
    if base_url is None and not model:
        raise ConfigError("offline runs need --model (what vllm.LLM loads)",
                          "pass --model, or --base-url to measure a running server")
    if base_url is not None and engine:
        raise ConfigError(f"engine arguments ({', '.join(sorted(engine))}) apply to offline runs only",
                          "set them on the server, or drop --base-url to run vllm.LLM here")
    if num_iters < 1 or num_iters_warmup < 0:
        raise ConfigError("--num-iters must be ≥ 1 and --num-iters-warmup ≥ 0", "e.g. --num-iters 5")
    return RunSettings(
        mode="online" if base_url else "offline", model=model, base_url=base_url, dtype=dtype,
        engine_args=engine, num_iters_warmup=num_iters_warmup, num_iters=num_iters, seed=seed,
        timeout_s=timeout, tokenizer=tokenizer, api_key=api_key, hardware=hardware,
        num_hardware=num_hardware, model_config=model_config)


def _emit(results: list[Measurement], as_json: bool, title: str, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        docs = []
        for m in results:
            doc = m.to_dict()
            doc.update(latency=asdict(m.latency),
                       throughput_tokens_per_s=m.throughput_tokens_per_s,
                       output_tokens_per_s=m.output_tokens_per_s,
                       flop_rate_per_s=m.flop_rate_per_s, tokens_exact=m.tokens_exact)
            docs.append(doc)
        sys.stdout.write(json.dumps({"results": docs, **(extra or {})}, indent=2) + "\n")
    else:
        out.print(results_table(results, title=title))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A batch job's time limit arrives as SIGTERM: stop like Ctrl-C, so the worker process
    (its own session, holding the GPUs) is killed and the sweep can resume later."""
    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(points: list[Point], settings: RunSettings, csv: Path, csv_format: str,
         resume: bool, retry_failed: bool = False) -> SweepOutcome:
    results = ResultsFile(csv, get_format(csv_format))
    with _sigterm_as_interrupt():
        outcome = run_points(points, settings, results, LinePrinter(err),
                             retry_failed=retry_failed, resume=resume)
    err.print(f"CSV ({csv_format}): {csv}  journal: {results.journal_path}", highlight=False)
    return outcome


@handle_errors
def throughput_command(
    ctx: typer.Context,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    batch_size: Annotated[int, typer.Option(help="B: prompts per batch (online: concurrent requests)")] = 8,
    input_len: Annotated[int, typer.Option(help="I: prompt tokens, exact")] = 128,
    output_len: Annotated[int, typer.Option(help="O: generated tokens per prompt (max_tokens, ignore_eos)")] = 128,
    tensor_parallel_size: TpOpt = 1,
    pipeline_parallel_size: PpOpt = 1,
    dtype: DtypeOpt = None,
    trust_remote_code: TrustOpt = False,
    max_model_len: MmlOpt = None,
    gpu_memory_utilization: GpuMemOpt = None,
    enforce_eager: EagerOpt = None,
    engine_arg: EngineArgOpt = None,
    num_iters_warmup: WarmOpt = 1,
    num_iters: ItersOpt = 5,
    seed: SeedOpt = 0,
    timeout: TimeoutOpt = None,
    tokenizer: TokenizerOpt = None,
    api_key: KeyOpt = None,
    hardware: HwOpt = None,
    num_hardware: NumHwOpt = None,
    model_config: ModelCfgOpt = None,
    csv: Annotated[Path, typer.Option(help="CSV the result row is appended to")] = Path("throughput.csv"),
    csv_format: FmtOpt = "servemark",
    as_json: JsonOpt = False,
) -> None:
    """Batch throughput: B prompts of exactly I tokens, O tokens each; latency percentiles and
    tokens/s, one CSV row. Offline with vllm.LLM (a fresh process), or online with --base-url."""
    settings = _settings(ctx, model=model, base_url=base_url, dtype=dtype, engine_arg=engine_arg,
                         trust_remote_code=trust_remote_code,
                         gpu_memory_utilization=gpu_memory_utilization,
                         enforce_eager=enforce_eager, num_iters_warmup=num_iters_warmup,
                         num_iters=num_iters, seed=seed, timeout=timeout, tokenizer=tokenizer,
                         api_key=api_key, hardware=hardware, num_hardware=num_hardware,
                         model_config=model_config)
    point = Point(input_len, output_len, batch_size, tensor_parallel_size, pipeline_parallel_size,
                  max_model_len)
    if min(input_len, output_len, batch_size, tensor_parallel_size, pipeline_parallel_size) < 1:
        raise ConfigError("lengths, batch size and parallel sizes must be ≥ 1", "check the flags")
    outcome = _run([point], settings, csv, csv_format, resume=False)
    _emit(outcome.results, as_json, f"{settings.mode} throughput")
    raise typer.Exit(0 if all(m.ok for m in outcome.results) else 1)


@handle_errors
def sweep_command(
    ctx: typer.Context,
    spec: Annotated[Path | None, typer.Option(help="YAML file with the sweep's settings (flags override it)")] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    input_lens: Annotated[str | None, typer.Option(help="Input lengths, e.g. 128,256 [default 128,256,512,1024,2048]")] = None,
    output_lens: Annotated[str | None, typer.Option(help="Output lengths, crossed with the inputs [default: output = input]")] = None,
    batch_sizes: Annotated[str | None, typer.Option(help="Batch sizes (online: concurrent requests) [default 1,16,32,64]")] = None,
    tp_sizes: Annotated[str | None, typer.Option(help="Tensor-parallel sizes [default 1,2,4 offline; online: one label]")] = None,
    pipeline_parallel_size: PpOpt = 1,
    dtype: DtypeOpt = None,
    trust_remote_code: TrustOpt = False,
    max_model_len: MmlOpt = None,
    gpu_memory_utilization: GpuMemOpt = None,
    enforce_eager: EagerOpt = None,
    engine_arg: EngineArgOpt = None,
    num_iters_warmup: Annotated[int | None, typer.Option(help="Warm-up iterations per point [1]")] = None,
    num_iters: Annotated[int | None, typer.Option(help="Timed iterations per point [5]")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the random prompts [0]")] = None,
    point_timeout: TimeoutOpt = None,
    tokenizer: TokenizerOpt = None,
    api_key: KeyOpt = None,
    hardware: HwOpt = None,
    num_hardware: NumHwOpt = None,
    model_config: ModelCfgOpt = None,
    csv: Annotated[Path | None, typer.Option(help="CSV each point is appended to [sweep.csv]")] = None,
    csv_format: Annotated[str | None, typer.Option(help=FORMAT_HELP)] = None,
    retry_failed: Annotated[bool, typer.Option(help="Measure points that failed before again")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A matrix of points (input × output lengths × batch × TP), each appended to the CSV as
    soon as measured. Re-running skips the points already done; failed points are recorded."""
    data, lines = load_yaml_spec(spec) if spec is not None else ({}, None)
    from_file = set(data)
    flags: dict[str, Any] = {
        "model": model, "base_url": base_url,
        "input_lens": parse_list(input_lens, int, "--input-lens"),
        "output_lens": parse_list(output_lens, int, "--output-lens"),
        "batch_sizes": parse_list(batch_sizes, int, "--batch-sizes"),
        "tp_sizes": parse_list(tp_sizes, int, "--tp-sizes"),
        "max_model_len": max_model_len, "dtype": dtype, "num_iters_warmup": num_iters_warmup,
        "num_iters": num_iters, "seed": seed, "point_timeout_s": point_timeout,
        "tokenizer": tokenizer, "hardware": hardware, "num_hardware": num_hardware,
        "csv": csv, "csv_format": csv_format,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    from_file -= {k for k, v in flags.items() if v is not None}
    if pipeline_parallel_size != 1:
        data["pp_size"] = pipeline_parallel_size
    if retry_failed:
        data["retry_failed"] = True
    engine = _engine_args(ctx, engine_arg, trust_remote_code, gpu_memory_utilization, enforce_eager)
    data["engine_args"] = {**data.get("engine_args", {}), **engine}
    data.setdefault("mode", "online" if data.get("base_url") else "offline")
    try:
        sweep = make_sweep_spec(data)
    except ConfigError as exc:  # a key of the spec file: name its line
        if spec is None or not exc.key_path or exc.key_path[0] not in from_file:
            raise
        raise ConfigError(f"{at_line(str(spec), lines, exc.key_path)}: {exc.message}",
                          exc.hint) from None
    if sweep.mode == "online" and sweep.engine_args:
        raise ConfigError("engine arguments apply to offline sweeps only",
                          "set them on the server, or drop base_url")
    settings = sweep.settings(api_key)
    if model_config:
        settings = replace(settings, model_config=model_config)
    points = sweep.points()
    err.print(f"sweep: {len(points)} points, {sweep.mode}", highlight=False)
    outcome = _run(points, settings, sweep.csv, sweep.csv_format, resume=True,
                   retry_failed=sweep.retry_failed)
    _emit(outcome.results, as_json, f"{sweep.mode} sweep",
          {"measured": outcome.measured, "skipped": outcome.skipped})
    err.print(f"{outcome.measured} measured, {outcome.skipped} skipped (done before), "
              f"{len(outcome.failed)} failed", highlight=False)
    raise typer.Exit(1 if outcome.results and not any(m.ok for m in outcome.results) else 0)


@handle_errors
def fom_command(
    ctx: typer.Context,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    batch_size: Annotated[int, typer.Option(help="B for every scenario (online: concurrent requests)")] = 1,
    fom1_input_len: Annotated[int, typer.Option(help="FOM1 (prefill-heavy) input tokens")] = 8192,
    fom1_output_len: Annotated[int, typer.Option(help="FOM1 output tokens")] = 1,
    fom1_max_model_len: Annotated[int | None, typer.Option(help="FOM1 max model length (offline) [model's]")] = None,
    fom2_input_len: Annotated[int, typer.Option(help="FOM2 (decode-heavy) input tokens")] = 512,
    fom2_output_len: Annotated[int, typer.Option(help="FOM2 output tokens")] = 8192,
    fom2_max_model_len: Annotated[int | None, typer.Option(help="FOM2 max model length (offline) [model's]")] = None,
    fom3_input_len: Annotated[int, typer.Option(help="FOM3 (long-context) input tokens")] = 8192,
    fom3_output_len: Annotated[int, typer.Option(help="FOM3 output tokens")] = 8192,
    fom3_max_model_len: Annotated[int | None, typer.Option(help="FOM3 max model length (offline)")] = 32768,
    scenarios: Annotated[str, typer.Option(help="Which scenarios to run, e.g. FOM1,FOM3")] = "FOM1,FOM2,FOM3",
    tensor_parallel_size: TpOpt = 1,
    pipeline_parallel_size: PpOpt = 1,
    dtype: DtypeOpt = None,
    trust_remote_code: TrustOpt = False,
    gpu_memory_utilization: GpuMemOpt = None,
    enforce_eager: EagerOpt = None,
    engine_arg: EngineArgOpt = None,
    num_iters_warmup: WarmOpt = 1,
    num_iters: ItersOpt = 3,
    seed: SeedOpt = 0,
    timeout: TimeoutOpt = None,
    tokenizer: TokenizerOpt = None,
    api_key: KeyOpt = None,
    hardware: HwOpt = None,
    num_hardware: NumHwOpt = None,
    model_config: ModelCfgOpt = None,
    csv: Annotated[Path, typer.Option(help="CSV the scenario rows are appended to")] = Path("fom.csv"),
    csv_format: FmtOpt = "servemark",
    rerun: Annotated[bool, typer.Option(help="Measure again even if the CSV's journal has the scenarios")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The FOM suite: FOM1 prefill-heavy, FOM2 decode-heavy, FOM3 long-context; total FOM =
    sum of throughputs, plus the FLOP-rate form (C_prefill + C_decode) / latency."""
    settings = _settings(ctx, model=model, base_url=base_url, dtype=dtype, engine_arg=engine_arg,
                         trust_remote_code=trust_remote_code,
                         gpu_memory_utilization=gpu_memory_utilization,
                         enforce_eager=enforce_eager, num_iters_warmup=num_iters_warmup,
                         num_iters=num_iters, seed=seed, timeout=timeout, tokenizer=tokenizer,
                         api_key=api_key, hardware=hardware, num_hardware=num_hardware,
                         model_config=model_config)
    lengths = {
        "FOM1": (fom1_input_len, fom1_output_len, fom1_max_model_len),
        "FOM2": (fom2_input_len, fom2_output_len, fom2_max_model_len),
        "FOM3": (fom3_input_len, fom3_output_len, fom3_max_model_len),
    }
    wanted = [s.strip().upper() for s in scenarios.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in lengths]
    if unknown or not wanted:
        raise ConfigError(f"unknown scenario(s) {', '.join(unknown) or '(none)'}",
                          "choose from FOM1, FOM2, FOM3")
    chosen = [Scenario(d.name, *lengths[d.name], d.description)
              for d in DEFAULT_SCENARIOS if d.name in wanted]
    if min(min(s.input_len, s.output_len) for s in chosen) < 1 or batch_size < 1:
        raise ConfigError("lengths and batch size must be ≥ 1", "check the --fom* flags")
    points = fom_points(chosen, batch_size, tensor_parallel_size, pipeline_parallel_size)
    outcome = _run(points, settings, csv, csv_format, resume=not rerun)
    result = FomResult(outcome.results)
    _emit(outcome.results, as_json, f"{settings.mode} FOM suite",
          {"total_throughput_tokens_per_s": result.total_throughput_tokens_per_s,
           "total_flop_rate_per_s": result.total_flop_rate_per_s})
    for line in fom_lines(result):
        err.print(line, highlight=False)
    raise typer.Exit(0 if result.complete else 1)


def register(app: typer.Typer) -> None:
    """Add the three commands (they accept unknown --flags as vLLM engine arguments)."""
    app.command("throughput", context_settings=PASS_THROUGH)(throughput_command)
    app.command("sweep", context_settings=PASS_THROUGH)(sweep_command)
    app.command("fom", context_settings=PASS_THROUGH)(fom_command)
