"""``servemark profile torch|nsys|trace|nsys-stats`` and ``servemark chat``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table as RichTable

from servemark.cli.common import err, handle_errors, out, parse_list

if TYPE_CHECKING:
    from servemark.chat.session import ChatSession
    from servemark.profile.nsys import KernelReport
    from servemark.profile.torchprof import TraceSummary
from servemark.cli.progress import RichBenchProgress
from servemark.errors import ConfigError
from servemark.spec import BenchConfig, make_config

app = typer.Typer(help="Profile a vLLM server during a benchmark (torch profiler, Nsight Systems).",
                  no_args_is_help=True)

Model = Annotated[str | None, typer.Option(help="Model dir or name: servemark starts vLLM with the profiler configured")]
BaseUrl = Annotated[str | None, typer.Option(help="Attach to a running server instead (its profiler must be configured)")]
Concurrency = Annotated[int, typer.Option(help="Requests in flight during the benchmark")]
InputLen = Annotated[int, typer.Option(help="Prompt tokens")]
OutputLen = Annotated[int, typer.Option(help="Output tokens")]
StartAfter = Annotated[float, typer.Option(help="Seconds of load before the window opens (steady state)")]
Window = Annotated[float, typer.Option(help="Seconds the profiler records")]
TopK = Annotated[int, typer.Option(help="Rows in the summary")]
ServerArg = Annotated[list[str] | None, typer.Option("--server-arg", help="Extra vLLM flag (repeatable), e.g. --server-arg=--enforce-eager")]
ResultsRoot = Annotated[Path, typer.Option(help="Where run directories are created")]


def _bench_config(base_url: str, concurrency: int, input_len: int, output_len: int,
                  duration_s: float, results_root: Path) -> BenchConfig:
    return make_config(base_url=base_url, concurrency=[concurrency], duration_s=duration_s,
                       input_len=input_len, output_len=output_len, results_root=results_root)


@app.command("torch")
@handle_errors
def torch_command(
    model: Model = None, base_url: BaseUrl = None,
    trace_dir: Annotated[Path | None, typer.Option(help="Where the server writes traces (default with --model: RESULTS_ROOT/torch-traces)")] = None,
    concurrency: Concurrency = 4, input_len: InputLen = 128, output_len: OutputLen = 128,
    start_after: StartAfter = 5.0, window: Window = 3.0, top_k: TopK = 15,
    max_model_len: Annotated[int, typer.Option(help="--max-model-len for a server we start")] = 2048,
    server_arg: ServerArg = None, results_root: ResultsRoot = Path("results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Record vLLM's torch profiler over a steady-state window of a benchmark; top operators by self time."""
    from servemark.profile import torchprof

    if (model is None) == (base_url is None):
        raise ConfigError("give either --model (servemark starts vLLM) or --base-url (attach)",
                          "for example --model ./my-model")
    duration = start_after + window + 2.0

    async def go(url: str, tdir: Path | None) -> torchprof.TorchProfileResult:
        cfg = _bench_config(url, concurrency, input_len, output_len, duration, results_root)
        with RichBenchProgress(err) as progress:
            return await torchprof.run_torch_profile(cfg, tdir, start_after, window,
                                                     progress=progress, top_k=top_k)

    if model is not None:
        from servemark.deploy.local import VllmServer

        tdir = (trace_dir or results_root / "torch-traces").resolve()
        tdir.mkdir(parents=True, exist_ok=True)
        server = VllmServer(model, extra_args=["--max-model-len", str(max_model_len),
                                               *torchprof.server_args(tdir), *(server_arg or [])],
                            env=torchprof.server_env(tdir))
        with server:
            err.print(f"starting vLLM on {escape(model)} (log: {server.log_path or 'temp file'})")
            server.start()
            result = asyncio.run(go(server.base_url, tdir))
    else:
        assert base_url is not None
        result = asyncio.run(go(base_url, trace_dir))
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(top_k), indent=2) + "\n")
        return
    _print_traces(result.traces, top_k)
    if not result.traces:
        err.print("traces stay where the server wrote them (pass --trace-dir to summarize)")
    err.print(f"results: {escape(str(result.run_dir))}")


def _print_traces(traces: list[TraceSummary], top_k: int) -> None:
    for tr in traces:
        if not tr.ops:
            continue
        total = tr.self_total_us or 1.0
        t = RichTable(title=escape(f"{Path(tr.path).name} — top {top_k} by self time"),
                      title_justify="left", header_style="bold")
        for col, just in (("operator", "left"), ("category", "left"), ("calls", "right"),
                          ("self ms", "right"), ("self %", "right"), ("total ms", "right")):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        for o in tr.top(top_k):
            t.add_row(escape(o.name[:80]), o.category, str(o.calls), f"{o.self_us / 1000:.2f}",
                      f"{o.self_us / total * 100:.1f}", f"{o.total_us / 1000:.2f}")
        out.print(t)


@app.command("trace")
@handle_errors
def trace_command(
    paths: Annotated[list[Path], typer.Argument(help="Chrome trace files (*.pt.trace.json[.gz])")],
    top_k: TopK = 15,
) -> None:
    """Summarize existing torch profiler traces: top operators by self time."""
    from servemark.profile.torchprof import summarize_trace

    _print_traces([summarize_trace(p) for p in paths], top_k)


def _print_kernels(report: KernelReport, top_k: int) -> None:
    t = RichTable(title=escape(f"{report.label}: top {top_k} kernels by GPU time"),
                  title_justify="left", header_style="bold")
    for col in ("kernel", "instances", "total ms", "share", "all-reduce"):
        t.add_column(col, justify="left" if col == "kernel" else "right")
    for k in report.top[:top_k]:
        t.add_row(escape(k.name[:90]), str(k.instances), f"{k.total_ns / 1e6:.2f}",
                  f"{k.share * 100:.1f}%", k.comm or "")
    out.print(t)
    kinds = ", ".join(f"{kind} {share * 100:.1f}%" for kind, share in sorted(report.allreduce_by_kind.items()))
    out.print(f"{escape(report.label)}: all-reduce {report.allreduce_share * 100:.1f}% of GPU kernel time"
              + (f" ({kinds})" if kinds else ""))


@app.command("nsys")
@handle_errors
def nsys_command(
    model: Annotated[str, typer.Option(help="Model dir or name to serve")],
    tp: Annotated[str, typer.Option(help="Tensor-parallel sizes, one server each, e.g. 1,2,4")] = "1",
    concurrency: Concurrency = 4, input_len: InputLen = 128, output_len: OutputLen = 128,
    start_after: StartAfter = 5.0, window: Window = 3.0, top_k: TopK = 10,
    capture: Annotated[str, typer.Option(help="api: record between /start_profile and /stop_profile (vLLM's cuda profiler); time: nsys --delay/--duration")] = "api",
    delay: Annotated[float | None, typer.Option(help="With --capture time: seconds after launch before recording (cover server start-up)")] = None,
    nsys: Annotated[str, typer.Option(help="The nsys executable")] = "nsys",
    server_arg: ServerArg = None, results_root: ResultsRoot = Path("results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON")] = False,
) -> None:
    """Run vLLM under Nsight Systems per TP size; top kernels and the all-reduce share of each."""
    from datetime import datetime

    from servemark.profile.nsys import require_nsys
    from servemark.profile.nsys_run import profile_tp

    require_nsys(nsys)
    sizes = parse_list(tp, int, "--tp") or [1]
    out_dir = results_root / f"nsys-{datetime.now():%Y%m%d-%H%M%S}"
    reports = []
    for size in sizes:
        err.print(f"TP={size}: starting vLLM under nsys (reports in {escape(str(out_dir))})")
        cfg = _bench_config("http://placeholder", concurrency, input_len, output_len,
                            start_after + window + 2.0, results_root)
        with RichBenchProgress(err) as progress:
            res = asyncio.run(profile_tp(model, size, cfg, out_dir, start_after, window, top_k,
                                         server_arg or [], capture, nsys, delay, progress))
        reports.append(res.kernels)
        (out_dir / f"tp{size}.kernels.json").write_text(json.dumps(res.kernels.to_dict(), indent=2))
        if not as_json:
            _print_kernels(res.kernels, top_k)
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")


@app.command("nsys-stats")
@handle_errors
def nsys_stats_command(
    inputs: Annotated[list[Path], typer.Argument(help="*.nsys-rep reports, or CSV files from `nsys stats --report cuda_gpu_kern_sum --format csv`")],
    top_k: TopK = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON")] = False,
) -> None:
    """Top kernels and all-reduce share of existing nsys reports (one configuration per file)."""
    from servemark.errors import ResultsError
    from servemark.profile.nsys import kernel_report, parse_kern_sum_csv, run_stats

    reports = []
    for path in inputs:
        if path.suffix == ".csv":
            try:
                kernels = parse_kern_sum_csv(path.read_text())
            except OSError as exc:
                raise ResultsError(f"cannot read {path}: {exc.strerror}", "pass an existing file") from exc
        else:
            kernels = run_stats(path)
        reports.append(kernel_report(path.stem, kernels, top_k))
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
        return
    for r in reports:
        _print_kernels(r, top_k)


CHAT_HELP = "commands: /reset  /system TEXT  /save FILE  /load FILE  /exit"


@handle_errors
def chat_command(
    base_url: Annotated[str, typer.Option(help="Server root URL, e.g. http://localhost:8000")],
    model: Annotated[str | None, typer.Option(help="Served model name (default: the only one served)")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt")] = None,
    prompt: Annotated[str | None, typer.Option(help="Ask once and exit (non-interactive)")] = None,
    completions: Annotated[bool, typer.Option(help="Use /v1/completions, applying the chat template locally (needs --tokenizer)")] = False,
    tokenizer: Annotated[str | None, typer.Option(help="Local tokenizer dir for --completions")] = None,
    max_tokens: Annotated[int, typer.Option(help="Maximum tokens per answer")] = 512,
    temperature: Annotated[float, typer.Option(help="Sampling temperature")] = 0.7,
    safety: Annotated[str | None, typer.Option(help="Gate prompts and flag answers: local, judge or azure")] = None,
    safety_rules: Annotated[Path | None, typer.Option(help="JSON rules for the local checker")] = None,
    judge_url: Annotated[str | None, typer.Option(help="Guard model server for --safety judge")] = None,
    judge_model: Annotated[str | None, typer.Option(help="Guard model for --safety judge")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", show_envvar=True, help="Bearer key (never recorded)")] = None,
) -> None:
    """Chat with a served model: streamed answers, history, TTFT and tokens/s per answer."""
    from servemark.chat.session import ChatSession, hf_template, served_models
    from servemark.safety.factory import make_checker

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    template = None
    if completions:
        if tokenizer is None:
            raise ConfigError("--completions applies the chat template locally", "pass --tokenizer DIR")
        template = hf_template(tokenizer)
    checker = None if safety is None else make_checker(
        safety, rules=safety_rules, judge_url=judge_url, judge_model=judge_model, headers=headers)
    loop = asyncio.new_event_loop()
    try:
        if model is None:
            models = loop.run_until_complete(served_models(base_url, headers))
            if len(models) != 1:
                raise ConfigError(f"the server serves {len(models)} models ({', '.join(models)})",
                                  "choose one with --model")
            model = models[0]
        session = ChatSession(base_url, model, system=system, headers=headers, template=template,
                              max_tokens=max_tokens, temperature=temperature, checker=checker)
        loop.run_until_complete(session.__aenter__())
        try:
            interactive = prompt is None and sys.stdin.isatty()
            if prompt is not None:
                lines = iter([prompt])
            elif interactive:
                err.print(f"chatting with {escape(model)} at {escape(base_url)} — {CHAT_HELP}")
                lines = _prompts()
            else:
                lines = (line.rstrip("\n") for line in sys.stdin)
            for line in lines:
                if not _turn(loop, session, line.strip()):
                    break
        finally:
            loop.run_until_complete(session.__aexit__(None, None, None))
    finally:
        loop.close()


def _prompts() -> Iterator[str]:
    while True:
        try:
            yield input("you> ")
        except EOFError:
            return


def _turn(loop: asyncio.AbstractEventLoop, session: ChatSession, line: str) -> bool:
    """One line of input: a command or a question. False ends the chat."""
    if not line:
        return True
    if line.startswith("/"):
        cmd, _, arg = line.partition(" ")
        arg = arg.strip()
        if cmd in ("/exit", "/quit"):
            return False
        if cmd == "/reset":
            session.reset()
            err.print("[dim]history cleared[/dim]")
        elif cmd == "/system":
            session.set_system(arg)
            err.print("[dim]system prompt " + ("set" if arg else "cleared") + "[/dim]")
        elif cmd == "/save" and arg:
            session.save(Path(arg))
            err.print(f"[dim]saved {len(session.messages)} messages to {escape(arg)}[/dim]")
        elif cmd == "/load" and arg:
            session.load(Path(arg))
            err.print(f"[dim]loaded {len(session.messages)} messages from {escape(arg)}[/dim]")
        else:
            err.print(f"[yellow]unknown command {escape(line)}[/yellow] — {CHAT_HELP}")
        return True

    def show(delta: str) -> None:
        sys.stdout.write(delta)
        sys.stdout.flush()

    answer = loop.run_until_complete(session.ask(line, show))
    if answer.blocked is not None:
        cats = ", ".join(c.name for c in answer.blocked.categories)
        err.print(f"[red]blocked by the {escape(answer.blocked.checker)} safety check[/red] ({escape(cats)}); not sent")
        return True
    sys.stdout.write("\n")
    sys.stdout.flush()
    ttft = "–" if answer.ttft_s is None else f"{answer.ttft_s * 1000:.0f} ms"
    tps = "–" if answer.tokens_per_s is None else f"{answer.tokens_per_s:.1f}"
    err.print(f"[dim][TTFT {ttft} · {answer.output_tokens if answer.output_tokens is not None else '?'} tokens · "
              f"{tps} tokens/s][/dim]", highlight=False)
    if answer.flagged is not None:
        cats = ", ".join(c.name for c in answer.flagged.categories)
        err.print(f"[red]the answer was flagged by the {escape(answer.flagged.checker)} safety check[/red] ({escape(cats)})")
    return True


