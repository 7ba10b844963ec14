"""``servemark bench``: benchmark any OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from servemark.api import BenchResult, bench, resume_bench
from servemark.cli.common import err, handle_errors, out, parse_json_object, parse_list
from servemark.cli.progress import RichBenchProgress
from servemark.cli.render import (
    client_bound_lines,
    endpoint_table,
    error_lines,
    markdown_table,
    summary_table,
)
from servemark.cli.report import rich_table
from servemark.cli.workload import (
    ApiOpt,
    DatasetFormatOpt,
    DatasetOpt,
    InputLenOpt,
    MaxInputLenOpt,
    MinInputLenOpt,
    OutputLenOpt,
    PrefixLenOpt,
    SeedOpt,
    TokenizerOpt,
    TurnsOpt,
    WorkloadOpt,
)
from servemark.errors import ConfigError
from servemark.load.runner import RunControl
from servemark.metrics.accumulate import PointAccumulator
from servemark.metrics.profiles import PROFILES, profile_rows_of
from servemark.report.server import server_metrics_table
from servemark.spec import make_config
from servemark.store.rundir import REQUESTS, iter_records

TABLE_FORMATS = ("rich", "markdown")

def print_profile(result: BenchResult, profile: str) -> None:
    """The run's numbers in another tool's conventions, one column per load point."""
    table = Table(title=f"in {profile}'s conventions", title_justify="left")
    table.add_column("metric")
    accs = dict(result.accumulators)  # what the summaries were computed from
    kept = {p.label for p in result.points} - set(accs)
    if kept:  # points kept from a resumed run: one streaming pass over their records
        accs.update({label: PointAccumulator() for label in kept})
        for rec in iter_records(result.run_dir / REQUESTS):
            if rec is not None and rec.load_point in kept:
                accs[rec.load_point].add(rec)
    columns = []
    for p in result.points:
        table.add_column(p.label, justify="right")
        columns.append(profile_rows_of(accs[p.label], profile))
    for i, (name, _) in enumerate(columns[0] if columns else []):
        table.add_row(name, *("–" if col[i][1] is None else f"{col[i][1]:.2f}" for col in columns))
    out.print(table)


def report_result(result: BenchResult, as_json: bool, profile: str | None = None,
                  table_format: str = "rich") -> int:
    """Print the result; return the exit code (1 when a load point completed nothing)."""
    if as_json:
        sys.stdout.write(json.dumps(result.document, indent=2, default=str) + "\n")
    else:
        if table_format == "markdown":
            sys.stdout.write(markdown_table(result.points))
        else:
            where = ", ".join(result.document.get("endpoints") or [result.endpoint.base_url])
            out.print(summary_table(result.points, title=escape(f"{result.model} @ {where}")))
            if (per_endpoint := endpoint_table(result.points)) is not None:
                out.print(per_endpoint)
        if profile:
            print_profile(result, profile)
        for line in client_bound_lines(result.points):
            err.print(f"[yellow]warning[/yellow] {escape(line)}")
        server = server_metrics_table(result.document)
        if server is not None and table_format != "markdown":  # stdout stays pure markdown
            out.print(rich_table(server))
        safety = result.document.get("safety")
        if safety:
            for label, c in safety["points"].items():
                err.print(f"safety ({escape(safety['checker'])}) {escape(label)}: {c['checked']} checked, "
                          f"{c['flagged']} flagged, {c['errors']} check errors")
        for line in error_lines(result.points):
            err.print(f"[red]errors[/red] {escape(line)}")
        state = "[yellow]partial (interrupted)[/yellow] " if result.partial else ""
        err.print(f"{state}results: {escape(str(result.run_dir))}")
    if result.partial:
        return 130
    if any(p.completed == 0 for p in result.points):
        return 1
    return 0


@handle_errors
def bench_command(
    base_url: Annotated[list[str] | None, typer.Option(help="Server root URL, e.g. http://localhost:8000; repeat to spread the load over several")] = None,
    lb_policy: Annotated[str, typer.Option(help="With several --base-url: round-robin or least-outstanding")] = "round-robin",
    model: Annotated[str | None, typer.Option(help="Served model name (default: the only model served)")] = None,
    api: ApiOpt = None,
    concurrency: Annotated[str | None, typer.Option(help="Closed loop: requests in flight; a list like 1,8,32 runs one point each")] = None,
    request_rate: Annotated[str | None, typer.Option(help="Open loop: requests/s; a list runs one point each")] = None,
    arrival: Annotated[str, typer.Option(help="Arrival process for --request-rate: poisson or constant")] = "poisson",
    max_concurrency: Annotated[int | None, typer.Option(help="Cap on in-flight requests for --request-rate")] = None,
    num_requests: Annotated[int | None, typer.Option(help="Measured requests per load point (default 100 unless --duration)")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds per load point (stops sending after)")] = None,
    warmup: Annotated[int, typer.Option(help="Warm-up requests per load point, not counted")] = 0,
    seed: SeedOpt = 0,
    workload: WorkloadOpt = "random",
    input_len: InputLenOpt = "128",
    output_len: OutputLenOpt = "128",
    tokenizer: TokenizerOpt = None,
    verify_tokenizer: Annotated[bool, typer.Option(help="Check that --tokenizer counts like the server before the run")] = True,
    dataset: DatasetOpt = None,
    dataset_format: DatasetFormatOpt = "auto",
    min_input_len: MinInputLenOpt = None,
    max_input_len: MaxInputLenOpt = None,
    turns: TurnsOpt = 3,
    prefix_len: PrefixLenOpt = None,
    ignore_eos: Annotated[bool, typer.Option(help="Ask the server to ignore EOS so outputs have exact length")] = True,
    stream: Annotated[bool, typer.Option(help="Stream tokens (SSE); --no-stream measures end-to-end latency only")] = True,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature")] = 0.0,
    extra_body: Annotated[str | None, typer.Option(help="JSON object merged into every request body")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Run directory (default: RESULTS_ROOT/<time>-<model>)")] = None,
    results_root: Annotated[Path, typer.Option(help="Where new run directories are created")] = Path("results"),
    connect_timeout: Annotated[float, typer.Option(help="Seconds to connect")] = 30.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds of silence allowed between chunks")] = 600.0,
    request_timeout: Annotated[float | None, typer.Option(help="Seconds allowed per request in total")] = None,
    first_token_timeout: Annotated[float | None, typer.Option(help="Seconds from sending a request to its first token")] = None,
    retries: Annotated[int, typer.Option(help="Send again after HTTP 429/503 (honouring Retry-After) or a connection error before any byte; one record per request")] = 0,
    retry_max_wait: Annotated[float, typer.Option(help="Longest wait before a retry, in seconds")] = 30.0,
    grace_period: Annotated[float, typer.Option(help="Seconds in-flight requests may finish after Ctrl-C")] = 30.0,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", show_envvar=True, help="Bearer key for the server (never recorded)")] = None,
    workers: Annotated[int, typer.Option(help="Client processes (each with its own event loop); use more when a run is flagged client-bound")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Run the --workers as Ray actors on this Ray cluster (GCS address HOST:PORT); servemark must be installed on its nodes")] = None,
    metrics_profile: Annotated[str | None, typer.Option(help="Also print the numbers in another tool's conventions: vllm, guidellm or aiperf")] = None,
    http_client: Annotated[str, typer.Option(help="HTTP client: fast (servemark's own) or aiohttp")] = "fast",
    num_gpus: Annotated[int | None, typer.Option(help="GPUs behind the endpoint, for per-GPU tokens/s")] = None,
    threshold_tps: Annotated[float | None, typer.Option(help="Count requests slower than this many output tokens/s (Meta's on-prem benchmark uses 7)")] = None,
    table_format: Annotated[str, typer.Option(help="Terminal table: rich, or markdown (the columns of Meta's on-prem vLLM benchmark)")] = "rich",
    server_metrics: Annotated[bool, typer.Option(help="Sample the server's Prometheus /metrics during each load point")] = True,
    metrics_interval: Annotated[float, typer.Option(help="Seconds between /metrics samples")] = 1.0,
    safety_check: Annotated[str | None, typer.Option(help="Record a safety verdict per request: local (patterns), judge (a guard model) or azure (AI Content Safety)")] = None,
    safety_on: Annotated[str, typer.Option(help="What --safety-check reads: output, prompt or prompt,output")] = "output",
    safety_rules: Annotated[Path | None, typer.Option(help="JSON rules for the local checker (default: the built-in set)")] = None,
    judge_url: Annotated[str | None, typer.Option(help="Server of the guard model for --safety-check judge")] = None,
    judge_model: Annotated[str | None, typer.Option(help="Guard model name for --safety-check judge")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary JSON on stdout")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory (stopped by a crash, kill or Ctrl-C) with its recorded config; other options are ignored")] = None,
) -> None:
    """Benchmark an OpenAI-compatible server: TTFT, TPOT, ITL, E2E, throughput, per load point."""
    if resume is not None:
        control = RunControl(grace_period)
        with RichBenchProgress(err) as progress:
            result = resume_bench(resume, api_key=api_key, progress=progress, control=control,
                                  handle_signals=True, argv=sys.argv)
        raise typer.Exit(report_result(result, as_json, metrics_profile, table_format))
    if not base_url:
        raise ConfigError("give --base-url (or --resume RUN_DIR)", "for example --base-url http://localhost:8000")
    if table_format not in TABLE_FORMATS:
        raise ConfigError(f"--table-format must be one of {', '.join(TABLE_FORMATS)}, got {table_format!r}",
                          "for example --table-format markdown")
    config = make_config(
        base_url=base_url, lb_policy=lb_policy, model=model, api=api, stream=stream,
        concurrency=parse_list(concurrency, int, "--concurrency"),
        request_rate=parse_list(request_rate, float, "--request-rate"),
        arrival=arrival, max_concurrency=max_concurrency, num_requests=num_requests,
        duration_s=duration, warmup=warmup, seed=seed, input_len=input_len, output_len=output_len,
        tokenizer=tokenizer, workload=workload, verify_tokenizer=verify_tokenizer, dataset=dataset,
        dataset_format=dataset_format, min_input_len=min_input_len, max_input_len=max_input_len,
        turns=turns, prefix_len=prefix_len, ignore_eos=ignore_eos, temperature=temperature,
        extra_body=parse_json_object(extra_body, "--extra-body"), output_dir=output_dir,
        results_root=results_root, connect_timeout_s=connect_timeout, read_timeout_s=read_timeout,
        request_timeout_s=request_timeout, first_token_timeout_s=first_token_timeout,
        retries=retries, retry_max_wait_s=retry_max_wait, grace_period_s=grace_period,
        api_key=api_key, http_client=http_client, workers=workers, ray_address=ray_address,
        num_gpus=num_gpus, threshold_tps=threshold_tps,
        server_metrics=server_metrics, metrics_interval_s=metrics_interval,
        safety_check=safety_check, safety_on=tuple(parse_list(safety_on, str, "--safety-on") or ()),
        safety_rules=safety_rules, judge_url=judge_url, judge_model=judge_model,
    )
    if metrics_profile is not None and metrics_profile not in PROFILES:
        raise ConfigError(f"unknown --metrics-profile {metrics_profile!r}",
                          f"choose one of {', '.join(PROFILES)}")
    control = RunControl(config.grace_period_s)
    with RichBenchProgress(err) as progress:
        result = bench(config, progress=progress, control=control, handle_signals=True,
                       argv=sys.argv)
    raise typer.Exit(report_result(result, as_json, metrics_profile, table_format))
